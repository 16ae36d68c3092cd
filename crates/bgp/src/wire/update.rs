//! UPDATE (RFC 4271 §4.3) and its revised error handling (RFC 7606).
//!
//! ```text
//! +-----------------------------------------------------+
//! |   Withdrawn Routes Length (2 octets)                |
//! +-----------------------------------------------------+
//! |   Withdrawn Routes (variable)                       |
//! +-----------------------------------------------------+
//! |   Total Path Attribute Length (2 octets)            |
//! +-----------------------------------------------------+
//! |   Path Attributes (variable)                        |
//! +-----------------------------------------------------+
//! |   Network Layer Reachability Information (variable) |
//! +-----------------------------------------------------+
//! ```
//!
//! Decoding yields an [`UpdateOutcome`]: the UPDATE as received, the UPDATE minus attributes
//! that were discarded, an UPDATE that withdraws everything the message mentioned
//! (treat-as-withdraw), or the NOTIFICATION that resets the session. Each malformed attribute
//! picks its treatment per RFC 7606 §7; the strongest one wins (§3 f).

use bytes::{BufMut, BytesMut};
use ipnet::IpNet;

use super::error::{Error, Result};
use super::options::{DecodeOptions, EncodeOptions};
use super::reader::Reader;
use super::{Family, MpUnreach, PathAttributes, Update, attr_type as ty, attribute, nlri};

/// RFC 7606 treatments, weakest first (§2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Action {
    /// The attribute is dropped and the UPDATE used without it.
    AttributeDiscard,
    /// The UPDATE's prefixes are withdrawn as if it had listed them as unreachable.
    TreatAsWithdraw,
    /// The session is reset with a NOTIFICATION.
    SessionReset,
}

/// One malformed (or misplaced) attribute and what RFC 7606 says to do about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrIssue {
    pub action: Action,
    pub type_code: u8,
    /// What was wrong; `error.to_notification()` is what RFC 4271 would have sent.
    pub error: Error,
}

/// What a received UPDATE means for the session (RFC 7606 §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// Well-formed.
    Ok(Update),
    /// Use `update`; the attributes in `discarded` were malformed and left out of it.
    AttributeDiscard {
        update: Update,
        discarded: Vec<AttrIssue>,
    },
    /// `update` withdraws every prefix the message announced or withdrew (IPv4 unicast in
    /// `withdrawn`, IPv6 unicast in `attributes.mp_unreach`); `issues` says why. A malformed
    /// UPDATE that mentioned no prefix at all comes back with its well-formed attributes and
    /// no prefixes; it is never an End-of-RIB marker, even if `update.end_of_rib()` says so
    /// because every attribute was malformed, so check the treatment first.
    TreatAsWithdraw { update: Update, issues: Vec<AttrIssue> },
    /// Send `error.to_notification()` and close the session.
    SessionReset(Error),
}

/// The RFC 7606 part of an [`UpdateOutcome`] once the UPDATE itself is taken out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Treatment {
    pub action: Action,
    pub issues: Vec<AttrIssue>,
}

impl UpdateOutcome {
    /// The UPDATE to process, unless the session must be reset.
    pub fn update(&self) -> Option<&Update> {
        match self {
            UpdateOutcome::Ok(u)
            | UpdateOutcome::AttributeDiscard { update: u, .. }
            | UpdateOutcome::TreatAsWithdraw { update: u, .. } => Some(u),
            UpdateOutcome::SessionReset(_) => None,
        }
    }

    /// The strongest action taken, `None` for a clean UPDATE.
    pub fn action(&self) -> Option<Action> {
        match self {
            UpdateOutcome::Ok(_) => None,
            UpdateOutcome::AttributeDiscard { .. } => Some(Action::AttributeDiscard),
            UpdateOutcome::TreatAsWithdraw { .. } => Some(Action::TreatAsWithdraw),
            UpdateOutcome::SessionReset(_) => Some(Action::SessionReset),
        }
    }

    /// Splits into the UPDATE to process and the treatment applied, or the session-reset
    /// error.
    pub fn into_parts(self) -> Result<(Update, Option<Treatment>)> {
        match self {
            UpdateOutcome::Ok(u) => Ok((u, None)),
            UpdateOutcome::AttributeDiscard { update, discarded } => Ok((
                update,
                Some(Treatment {
                    action: Action::AttributeDiscard,
                    issues: discarded,
                }),
            )),
            UpdateOutcome::TreatAsWithdraw { update, issues } => Ok((
                update,
                Some(Treatment {
                    action: Action::TreatAsWithdraw,
                    issues,
                }),
            )),
            UpdateOutcome::SessionReset(e) => Err(e),
        }
    }
}

/// Decodes an UPDATE body (the message after its 19-octet header).
pub fn decode_update(body: &[u8], opts: &DecodeOptions) -> UpdateOutcome {
    decode_inner(body, opts).unwrap_or_else(UpdateOutcome::SessionReset)
}

fn decode_inner(body: &[u8], opts: &DecodeOptions) -> Result<UpdateOutcome> {
    // RFC 4271 §6.3 and RFC 7606 §3 (g): lengths that disagree with the message length make
    // every field unlocatable.
    let mut r = Reader::new(body);
    let withdrawn_len = r.u16().ok_or(Error::MalformedAttributeList {
        reason: "withdrawn routes length missing",
    })?;
    let withdrawn_buf = r
        .take(usize::from(withdrawn_len))
        .ok_or(Error::MalformedAttributeList {
            reason: "withdrawn routes length exceeds the message",
        })?;
    let attrs_len = r.u16().ok_or(Error::MalformedAttributeList {
        reason: "total attribute length missing",
    })?;
    let attrs_buf = r
        .take(usize::from(attrs_len))
        .ok_or(Error::MalformedAttributeList {
            reason: "total attribute length exceeds the message",
        })?;
    let nlri_buf = r.rest();

    // RFC 7606 §5.3: unparseable NLRI or withdrawn routes reset the session.
    let mut withdrawn = Vec::new();
    nlri::decode_v4(withdrawn_buf, &mut withdrawn)
        .map_err(|e| Error::InvalidNetworkField { reason: e.reason() })?;
    let mut announced = Vec::new();
    nlri::decode_v4(nlri_buf, &mut announced)
        .map_err(|e| Error::InvalidNetworkField { reason: e.reason() })?;

    let mut parsed = attribute::decode(attrs_buf, opts)?;
    let attrs = &parsed.attrs;
    let has_reach = !announced.is_empty() || attrs.mp_reach.as_ref().is_some_and(|r| !r.nlri.is_empty());

    if let Some(error) = parsed.overrun.take() {
        // RFC 7606 §4: the attributes after the broken one are lost. If the message says
        // what it is about (classic NLRI, or an MP attribute, which §5.1 puts first), those
        // prefixes can be withdrawn; otherwise an MP_REACH_NLRI may hide in the lost part
        // and only a reset is safe.
        let locatable = has_reach
            || !withdrawn.is_empty()
            || parsed.has(ty::MP_REACH_NLRI)
            || parsed.has(ty::MP_UNREACH_NLRI);
        if !locatable {
            return Err(Error::MalformedAttributeList {
                reason: "attribute length overruns the attribute block",
            });
        }
        let type_code = match &error {
            Error::AttributeLength { type_code, .. } => *type_code,
            _ => 0,
        };
        parsed.issues.push(AttrIssue {
            action: Action::TreatAsWithdraw,
            type_code,
            error,
        });
    }

    // RFC 7606 §3 (d): mandatory attributes are only required when something is announced.
    if has_reach {
        // NEXT_HOP only matters for the classic NLRI field (RFC 4760 §3).
        let next_hop = (!announced.is_empty()).then_some(ty::NEXT_HOP);
        for type_code in [Some(ty::ORIGIN), Some(ty::AS_PATH), next_hop]
            .into_iter()
            .flatten()
        {
            if !parsed.has(type_code) {
                parsed.issues.push(AttrIssue {
                    action: Action::TreatAsWithdraw,
                    type_code,
                    error: Error::MissingWellKnownAttribute { type_code },
                });
            }
        }
    }

    let worst = parsed.issues.iter().map(|i| i.action).max();
    let update = Update {
        withdrawn,
        attributes: parsed.attrs,
        nlri: announced,
    };
    Ok(match worst {
        None => UpdateOutcome::Ok(update),
        Some(Action::AttributeDiscard) => UpdateOutcome::AttributeDiscard {
            update,
            discarded: parsed.issues,
        },
        Some(Action::TreatAsWithdraw) => UpdateOutcome::TreatAsWithdraw {
            update: into_withdrawal(update),
            issues: parsed.issues,
        },
        // Attribute parsing returns resets as `Err`; kept for completeness.
        Some(Action::SessionReset) => {
            let error = parsed
                .issues
                .into_iter()
                .find(|i| i.action == Action::SessionReset)
                .map(|i| i.error);
            UpdateOutcome::SessionReset(error.unwrap_or(Error::MalformedAttributeList {
                reason: "session reset",
            }))
        }
    })
}

/// The UPDATE that withdraws every prefix `u` mentions (RFC 7606 §2 "treat-as-withdraw").
/// When it mentions none, its well-formed attributes are kept so that it does not read as
/// an End-of-RIB marker.
fn into_withdrawal(u: Update) -> Update {
    let Update {
        mut withdrawn,
        mut attributes,
        nlri,
    } = u;
    withdrawn.extend(nlri);
    let mut v6 = Vec::new();
    let mp = attributes.mp_reach.take().into_iter().flat_map(|r| r.nlri);
    let mp = mp.chain(attributes.mp_unreach.take().into_iter().flat_map(|u| u.withdrawn));
    for p in mp {
        match p {
            IpNet::V4(p) => withdrawn.push(p),
            IpNet::V6(_) => v6.push(p),
        }
    }
    if withdrawn.is_empty() && v6.is_empty() {
        return Update {
            withdrawn,
            attributes,
            nlri: Vec::new(),
        };
    }
    let mp_unreach = (!v6.is_empty()).then_some(MpUnreach {
        family: Family::IPV6_UNICAST,
        withdrawn: v6,
    });
    Update {
        withdrawn,
        attributes: PathAttributes {
            mp_unreach,
            ..Default::default()
        },
        nlri: Vec::new(),
    }
}

/// Encodes an UPDATE body (after the header).
pub(crate) fn encode(u: &Update, opts: &EncodeOptions, out: &mut BytesMut) {
    let at = out.len();
    out.put_u16(0);
    for p in &u.withdrawn {
        nlri::encode_v4(p, out);
    }
    let withdrawn_len = (out.len() - at - 2) as u16;
    out[at..at + 2].copy_from_slice(&withdrawn_len.to_be_bytes());
    let at = out.len();
    out.put_u16(0);
    attribute::encode(&u.attributes, opts, out);
    let attrs_len = (out.len() - at - 2) as u16;
    out[at..at + 2].copy_from_slice(&attrs_len.to_be_bytes());
    for p in &u.nlri {
        nlri::encode_v4(p, out);
    }
}
