//! Logging set-up shared by every subcommand: `RUST_LOG` filters, stderr output, and one
//! setting changed at run time: the BGP speaker's level (BGPConfiguration `logSeverityScreen`,
//! as Calico sets BIRD's).

use std::sync::{Mutex, OnceLock};

/// Replaces the live filter; set once by [`init`].
type Reload = Box<dyn Fn(tracing_subscriber::EnvFilter) + Send + Sync>;

static RELOAD: OnceLock<Reload> = OnceLock::new();
/// The BGP level last applied, so an unchanged one rebuilds nothing.
static BGP_LEVEL: Mutex<Option<&'static str>> = Mutex::new(None);

fn base_directives() -> String {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|v| tracing_subscriber::EnvFilter::try_new(v).is_ok())
        .unwrap_or_else(|| "info".to_string())
}

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::new(base_directives());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: a pod's log (kubectl logs) is a file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter_reloading();
    let handle = builder.reload_handle();
    if builder.try_init().is_ok() {
        let _ = RELOAD.set(Box::new(move |f| {
            let _ = handle.reload(f);
        }));
    }
}

/// The `RUST_LOG` directives with the BGP speaker's (`caracal_bgp`) level set to `level`
/// (`None`: as `RUST_LOG` says).
pub fn directives_with_bgp_level(base: &str, level: Option<&str>) -> String {
    match level {
        None => base.to_string(),
        Some(l) => {
            let kept: Vec<&str> = base
                .split(',')
                .filter(|d| !d.trim().is_empty() && !d.trim().starts_with("caracal_bgp"))
                .collect();
            let mut out = kept.join(",");
            if !out.is_empty() {
                out.push(',');
            }
            out.push_str(&format!("caracal_bgp={l}"));
            out
        }
    }
}

/// Sets the BGP speaker's log level (`trace`, `debug`, `info`, `warn`, `error`; `None`: back to
/// `RUST_LOG`), for the whole process, at once. A no-op before [`init`] or when unchanged.
pub fn set_bgp_level(level: Option<&'static str>) {
    let Some(reload) = RELOAD.get() else {
        return;
    };
    let mut current = BGP_LEVEL.lock().expect("log level lock");
    if *current == level {
        return;
    }
    *current = level;
    let directives = directives_with_bgp_level(&base_directives(), level);
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_new(&directives) {
        reload(filter);
        tracing::info!(%directives, "log filter changed (BGPConfiguration logSeverityScreen)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bgp_level_replaces_only_the_bgp_directive() {
        assert_eq!(directives_with_bgp_level("info", None), "info");
        assert_eq!(
            directives_with_bgp_level("info", Some("debug")),
            "info,caracal_bgp=debug"
        );
        assert_eq!(
            directives_with_bgp_level("warn,caracal_bgp=trace,kube=debug", Some("error")),
            "warn,kube=debug,caracal_bgp=error"
        );
        assert!(
            tracing_subscriber::EnvFilter::try_new(directives_with_bgp_level("info", Some("warn"))).is_ok()
        );
    }
}
