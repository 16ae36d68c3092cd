//! BGP benchmarks: the caracal speaker against BIRD, measured in the same run, in lab namespaces.
//!
//! ```text
//! cargo build --release -p caracal --bin caracal --example bgp_bench
//! sudo target/release/examples/bgp_bench ingest [--prefixes 1000000] [--runs 3] [--only bird|caracal] [--verify]
//! sudo target/release/examples/bgp_bench fanout [--peers 50] [--prefixes 10000] [--runs 3] [--only ...]
//! ```
//!
//! `ingest`: one eBGP peer (a small feeder that speaks just enough BGP: OPEN, KEEPALIVE, then a
//! pre-encoded feed) sends N IPv4 prefixes with realistic attributes - about 27 prefixes per
//! UPDATE, each UPDATE with its own AS path, 20% of prefixes with communities, End-of-RIB last.
//! Measured: time from Established until the receiver reports all prefixes accepted, and RSS
//! growth per prefix. `fanout`: the speaker advertises N prefixes to P peers (one BIRD with P
//! sessions, each into its own table); measured: time from the speaker's start until every peer
//! holds every prefix. Each figure is the median of the runs; the ratio is caracal / BIRD.

use std::{
    collections::HashSet,
    fmt::Write as _,
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, bail};
use caracal::lab::{Lab, UpOptions};
use caracal_bgp::wire::{
    AsPath, Capability, EncodeOptions, Family, Message, Open, Origin, PathAttributes, SessionOptions,
    encode_end_of_rib, encode_updates, frame_len,
};
use ipnet::{IpNet, Ipv4Net};

const FEEDER_AS: u32 = 65002;
const RX_AS: u32 = 65001;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str, default: usize| -> Result<usize> {
        match args.iter().position(|a| a == name) {
            Some(i) => args
                .get(i + 1)
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| format!("{name}: not a number")),
            None => Ok(default),
        }
    };
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let daemons: Vec<Daemon> = [Daemon::Bird, Daemon::Caracal]
        .into_iter()
        .filter(|d| only.as_deref().is_none_or(|o| o == d.name()))
        .collect();
    match args.first().map(String::as_str) {
        Some("feed") => {
            let [_, peer, file] = &args[..] else {
                bail!("usage: bgp_bench feed <peer address> <feed file>")
            };
            feed(peer, Path::new(file))
        }
        Some("ingest") => {
            caracal::lab::require_root()?;
            let verify = args.iter().any(|a| a == "--verify");
            ingest(opt("--prefixes", 1_000_000)?, opt("--runs", 3)?, &daemons, verify)
        }
        Some("fanout") => {
            caracal::lab::require_root()?;
            fanout(
                opt("--peers", 50)?,
                opt("--prefixes", 10_000)?,
                opt("--runs", 3)?,
                &daemons,
            )
        }
        _ => bail!(
            "usage: bgp_bench ingest|fanout [--prefixes N] [--peers P] [--runs R] [--only bird|caracal]"
        ),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Daemon {
    Bird,
    Caracal,
}

impl Daemon {
    fn name(self) -> &'static str {
        match self {
            Daemon::Bird => "bird",
            Daemon::Caracal => "caracal",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The feed

/// A small deterministic PRNG (xorshift64*), so every run and every daemon gets the same feed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Unique IPv4 unicast prefixes with a length mix like the global table (most /24s, then
/// /22, /23, /20, /21, /19 ... /16).
fn prefixes(n: usize, rng: &mut Rng) -> Vec<Ipv4Net> {
    const LENS: [(u8, u64); 9] = [
        (24, 580),
        (23, 100),
        (22, 120),
        (21, 60),
        (20, 60),
        (19, 35),
        (18, 20),
        (17, 12),
        (16, 13),
    ];
    let total: u64 = LENS.iter().map(|l| l.1).sum();
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut pick = rng.below(total);
        let len = LENS
            .iter()
            .find(|(_, w)| {
                let hit = pick < *w;
                pick = pick.saturating_sub(*w);
                hit
            })
            .map_or(24, |l| l.0);
        // 1.0.0.0 - 223.255.255.255, skipping 10/8, 127/8 and the lab's own ranges.
        let addr = (rng.below(222) as u32 + 1) << 24 | (rng.next() as u32 & 0x00ff_ffff);
        let first = addr >> 24;
        if first == 10 || first == 127 {
            continue;
        }
        let net = Ipv4Net::new(Ipv4Addr::from(addr), len)
            .expect("length <= 32")
            .trunc();
        if seen.insert(net) {
            out.push(net);
        }
    }
    out.sort();
    out
}

struct Feed {
    bytes: Vec<u8>,
    updates: usize,
    prefixes: usize,
}

/// Encodes the feed: groups of 1..=54 prefixes (about 27 on average, as in a real table
/// dump), each group with its own AS path of 1 to 7 further ASes (a fifth of them 4-octet),
/// sometimes a MED, and for 20% of prefixes 1 to 4 communities.
fn build_feed(n: usize, next_hop: Ipv4Addr) -> Result<Feed> {
    let mut rng = Rng(0x00ca_7aca_1bb9_2026);
    let all = prefixes(n, &mut rng);
    let opts = SessionOptions::modern(true);
    let mut bytes = Vec::with_capacity(n * 7);
    let mut updates = 0;
    let mut at = 0;
    while at < all.len() {
        let size = (1 + rng.below(54) as usize).min(all.len() - at);
        let group: Vec<IpNet> = all[at..at + size].iter().map(|p| IpNet::V4(*p)).collect();
        at += size;
        let mut path = vec![FEEDER_AS];
        for _ in 0..1 + rng.below(7) {
            path.push(if rng.below(5) == 0 {
                131_072 + rng.below(270_000) as u32
            } else {
                1 + rng.below(64_000) as u32
            });
        }
        let communities = if rng.below(5) == 0 {
            (0..1 + rng.below(4))
                .map(|_| (FEEDER_AS << 16) | rng.below(65_536) as u32)
                .collect()
        } else {
            Vec::new()
        };
        let attrs = PathAttributes {
            origin: Some(if rng.below(10) == 0 {
                Origin::Incomplete
            } else {
                Origin::Igp
            }),
            as_path: Some(AsPath::sequence(path)),
            next_hop: Some(next_hop),
            med: (rng.below(3) == 0).then(|| rng.below(1000) as u32),
            communities,
            ..PathAttributes::default()
        };
        for m in encode_updates(&attrs, &group, &opts)? {
            bytes.extend_from_slice(&m);
            updates += 1;
        }
    }
    bytes.extend_from_slice(&encode_end_of_rib(Family::IPV4_UNICAST, &opts)?);
    Ok(Feed {
        bytes,
        updates,
        prefixes: all.len(),
    })
}

// ---------------------------------------------------------------------------------------------
// The feeder (runs inside the lab's feeder namespace)

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Reads one whole BGP message.
fn read_message(sock: &mut TcpStream, buf: &mut Vec<u8>, opts: &EncodeOptions) -> Result<Message> {
    loop {
        if let Some(len) = frame_len(buf, opts)?.filter(|len| buf.len() >= *len) {
            let frame: Vec<u8> = buf.drain(..len).collect();
            return Ok(Message::decode(&frame, opts)?);
        }
        let mut chunk = [0u8; 65536];
        let got = sock.read(&mut chunk)?;
        if got == 0 {
            bail!("the peer closed the connection");
        }
        buf.extend_from_slice(&chunk[..got]);
    }
}

/// Connects to `peer`, brings the session up, prints `established <unix ns>`, writes the whole
/// feed and keeps the session alive until killed.
fn feed(peer: &str, file: &Path) -> Result<()> {
    let data = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sock = loop {
        match TcpStream::connect((peer, 179)) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => return Err(e).context("connecting to the receiver"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    sock.set_nodelay(true)?;
    let plain = EncodeOptions::default();
    let open = Message::Open(Open {
        version: 4,
        my_as: FEEDER_AS as u16,
        hold_time: 240,
        router_id: Ipv4Addr::new(10, 255, 255, 2),
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::FourOctetAs(FEEDER_AS),
        ],
    });
    sock.write_all(&open.encode(&plain)?)?;
    let mut buf = Vec::new();
    match read_message(&mut sock, &mut buf, &plain)? {
        Message::Open(_) => {}
        other => bail!("expected OPEN, got {other:?}"),
    }
    sock.write_all(&Message::Keepalive.encode(&plain)?)?;
    let opts = SessionOptions::modern(true);
    loop {
        match read_message(&mut sock, &mut buf, &opts)? {
            Message::Keepalive => break,
            Message::Notification(n) => bail!("NOTIFICATION {}/{}", n.code, n.subcode),
            _ => {}
        }
    }
    println!("established {}", now_nanos());
    std::io::stdout().flush()?;
    sock.write_all(&data)?;
    println!("sent {}", now_nanos());
    std::io::stdout().flush()?;
    // Keep the session up: drain what the receiver sends, KEEPALIVE every 30 s.
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut chunk = [0u8; 65536];
    loop {
        match sock.read(&mut chunk) {
            Ok(0) => bail!("the receiver closed the session"),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                sock.write_all(&Message::Keepalive.encode(&plain)?)?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring

fn rss_bytes(lab: &Lab, node: &str) -> Result<u64> {
    let out = Command::new("ip")
        .args(["netns", "pids", lab.netns(node)?])
        .output()?;
    let mut total = 0;
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        if let Some(kb) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
        {
            total += kb * 1024;
        }
    }
    Ok(total)
}

/// Prefixes accepted from each BGP session, by session name (BIRD) or peer address (caracal).
fn accepted(lab: &Lab, node: &str, daemon: Daemon) -> Result<Vec<(String, u64)>> {
    match daemon {
        Daemon::Bird => {
            let text = lab.cli(node, &["show", "protocols", "all"])?;
            let mut out = Vec::new();
            let mut name = String::new();
            for line in text.lines() {
                if !line.starts_with(char::is_whitespace) {
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    if cols.get(1) == Some(&"BGP") {
                        name = cols[0].to_string();
                        out.push((name.clone(), 0));
                    } else {
                        name.clear();
                    }
                } else if let (Some(v), Some(last), false) = (
                    line.trim().strip_prefix("Routes:"),
                    out.last_mut(),
                    name.is_empty(),
                ) {
                    last.1 = v
                        .split_whitespace()
                        .next()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0);
                }
            }
            Ok(out)
        }
        Daemon::Caracal => {
            let v: serde_json::Value = serde_json::from_str(&lab.cli(node, &["--json"])?)?;
            Ok(v["peers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p["address"].as_str().unwrap_or_default().to_string(),
                        p["prefixes_accepted"].as_u64().unwrap_or(0),
                    )
                })
                .collect())
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn write_topology(
    dir: &Path,
    file: &str,
    name: &str,
    nodes: &[(&str, &str, Option<&str>, Vec<String>)],
    links: &[(&str, &str)],
) -> Result<PathBuf> {
    let mut t = format!("name: {name}\ntopology:\n  nodes:\n");
    for (node, kind, config, exec) in nodes {
        writeln!(t, "    {node}:\n      kind: {kind}")?;
        if let Some(c) = config {
            writeln!(t, "      startup-config: {c}")?;
        }
        writeln!(t, "      exec:")?;
        for e in exec {
            writeln!(t, "        - {e}")?;
        }
    }
    t.push_str("  links:\n");
    for (a, b) in links {
        writeln!(t, "    - endpoints: [\"{a}\", \"{b}\"]")?;
    }
    let path = dir.join(file);
    std::fs::write(&path, t)?;
    Ok(path)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// ingest

fn ingest(n: usize, runs: usize, daemons: &[Daemon], verify: bool) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let feed = build_feed(n, Ipv4Addr::new(10, 0, 1, 2))?;
    let feed_file = dir.path().join("feed.bin");
    std::fs::write(&feed_file, &feed.bytes)?;
    println!(
        "feed: {} prefixes in {} UPDATEs, {:.1} MiB (built in {:.2} s)",
        feed.prefixes,
        feed.updates,
        feed.bytes.len() as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    std::fs::write(
        dir.path().join("rx.conf"),
        format!(
            "router id 10.0.1.1;\nprotocol device {{ scan time 10; }}\n\
             protocol bgp feeder {{\n  local 10.0.1.1 as {RX_AS};\n  neighbor 10.0.1.2 as {FEEDER_AS};\n  \
             passive on;\n  hold time 240;\n  ipv4 {{ import all; export none; }};\n}}\n"
        ),
    )?;
    std::fs::write(
        dir.path().join("rx.yaml"),
        format!(
            "router_id: 10.0.1.1\nlocal_as: {RX_AS}\nlisten_port: 179\ncontrol_socket: ${{NODEDIR}}/caracal.sock\n\
             install_routes: false\npeers:\n  - address: 10.0.1.2\n    remote_as: {FEEDER_AS}\n    passive: true\n    \
             hold_time: 240\n    families: [ipv4_unicast]\n"
        ),
    )?;
    let me = std::env::current_exe()?;
    let mut results = Vec::new();
    for &d in daemons {
        let config = if d == Daemon::Bird { "rx.conf" } else { "rx.yaml" };
        let topo = write_topology(
            dir.path(),
            &format!("ingest-{}.yaml", d.name()),
            "bgpbench-in",
            &[
                (
                    "feeder",
                    "linux",
                    None,
                    vec!["ip addr add 10.0.1.2/30 dev eth1".into()],
                ),
                (
                    "rx",
                    d.name(),
                    Some(config),
                    vec!["ip addr add 10.0.1.1/30 dev eth1".into()],
                ),
            ],
            &[("feeder:eth1", "rx:eth1")],
        )?;
        let (mut times, mut per_route) = (Vec::new(), Vec::new());
        for run in 1..=runs {
            let lab = Lab::up(&topo, UpOptions::default())?;
            std::thread::sleep(Duration::from_millis(500));
            let rss0 = rss_bytes(&lab, "rx")?;
            let mut child = Command::new("ip")
                .args(["netns", "exec", lab.netns("feeder")?])
                .arg(&me)
                .args(["feed", "10.0.1.1"])
                .arg(&feed_file)
                .stdout(Stdio::piped())
                .stdin(Stdio::null())
                .spawn()?;
            let stdout = child.stdout.take().context("feeder stdout")?;
            let feeder = Killed(child);
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().context("the feeder exited before Established")??;
            let t0: u128 = first
                .strip_prefix("established ")
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("feeder said {first:?}"))?;
            let deadline = Instant::now() + Duration::from_secs(600);
            let done_ns = loop {
                let got: u64 = accepted(&lab, "rx", d)?.iter().map(|s| s.1).sum();
                if got as usize >= feed.prefixes {
                    break now_nanos();
                }
                if Instant::now() > deadline {
                    bail!(
                        "{}: only {got} of {} prefixes after 600 s",
                        d.name(),
                        feed.prefixes
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            let secs = (done_ns.saturating_sub(t0)) as f64 / 1e9;
            let rss1 = rss_bytes(&lab, "rx")?;
            let bpr = rss1.saturating_sub(rss0) as f64 / feed.prefixes as f64;
            println!(
                "{} run {run}: {:.3} s ({:.0} routes/s), RSS {:.1} -> {:.1} MiB, {:.0} bytes/route",
                d.name(),
                secs,
                feed.prefixes as f64 / secs,
                rss0 as f64 / 1048576.0,
                rss1 as f64 / 1048576.0,
                bpr
            );
            if verify {
                // The accepted counters must mean "in the Loc-RIB": count the RIB itself.
                let rib = match d {
                    Daemon::Bird => lab
                        .cli("rx", &["show", "route", "count"])?
                        .lines()
                        .find_map(|l| l.split_whitespace().next()?.parse::<usize>().ok())
                        .unwrap_or(0),
                    Daemon::Caracal => lab
                        .cli("rx", &["--routes"])?
                        .lines()
                        .filter(|l| l.contains("10.0.1.2"))
                        .count(),
                };
                println!("{} run {run}: verified: {rib} routes in the RIB", d.name());
                if rib < feed.prefixes {
                    bail!("{}: the RIB holds {rib} routes, not {}", d.name(), feed.prefixes);
                }
            }
            times.push(secs);
            per_route.push(bpr);
            drop(feeder);
            drop(lab);
        }
        results.push((d, median(times), median(per_route)));
    }
    println!("\nmedian of {runs} run(s), {} prefixes:", feed.prefixes);
    println!("| receiver | time | routes/s | bytes per route |");
    println!("|---|---|---|---|");
    for (d, t, b) in &results {
        println!(
            "| {} | {:.3} s | {:.0} | {:.0} |",
            d.name(),
            t,
            feed.prefixes as f64 / t,
            b
        );
    }
    if let (Some(c), Some(b)) = (
        results.iter().find(|r| r.0 == Daemon::Caracal),
        results.iter().find(|r| r.0 == Daemon::Bird),
    ) {
        println!(
            "caracal / BIRD: time {:.2}x, bytes per route {:.2}x",
            c.1 / b.1,
            c.2 / b.2
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// fanout

fn fanout(peers: usize, n: usize, runs: usize, daemons: &[Daemon]) -> Result<()> {
    if peers == 0 || peers > 200 {
        bail!("--peers must be 1..=200");
    }
    let dir = tempfile::tempdir()?;
    let prefixes: Vec<String> = (0..n)
        .map(|i| format!("10.{}.{}.0/24", 100 + i / 256, i % 256))
        .collect();
    if n > 100 * 256 {
        bail!("--prefixes must be at most 25600");
    }
    // Peer i talks over its own subnet 10.1.i.0/24 (sender .1, receiver .2) on the one link:
    // BIRD binds a session to a primary address only.
    let peer_addr = |i: usize| format!("10.1.{i}.2");
    let local_addr = |i: usize| format!("10.1.{i}.1");
    // The receivers: one BIRD with a session per peer address, each into its own table.
    let mut rx = String::from("router id 10.0.0.2;\nprotocol device { scan time 10; }\n");
    for i in 0..peers {
        write!(
            rx,
            "ipv4 table t{i};\nprotocol bgp p{i} {{\n  local {} as {};\n  neighbor {} as {RX_AS};\n  \
             connect delay time 1; connect retry time 1; hold time 90;\n  ipv4 {{ table t{i}; import all; export none; }};\n}}\n",
            peer_addr(i),
            65100 + i,
            local_addr(i)
        )?;
    }
    std::fs::write(dir.path().join("rx.conf"), rx)?;
    // The senders: BIRD with static routes, caracal with the same prefixes to originate.
    let mut bird = String::from(
        "router id 10.0.0.1;\nprotocol device { scan time 10; }\nprotocol static origin {\n  ipv4;\n",
    );
    for p in &prefixes {
        writeln!(bird, "  route {p} blackhole;")?;
    }
    bird.push_str("}\n");
    let mut yaml = format!(
        "router_id: 10.0.0.1\nlocal_as: {RX_AS}\nlisten_port: 179\ncontrol_socket: SOCK\ninstall_routes: false\nmrai_ms: 0\noriginate:\n"
    );
    for p in &prefixes {
        writeln!(yaml, "  - {p}")?;
    }
    yaml.push_str("peers:\n");
    for i in 0..peers {
        write!(
            bird,
            "protocol bgp p{i} {{\n  local {} as {RX_AS};\n  neighbor {} as {};\n  \
             connect delay time 1; connect retry time 1; hold time 90;\n  ipv4 {{ import none; export all; }};\n}}\n",
            local_addr(i),
            peer_addr(i),
            65100 + i
        )?;
        write!(
            yaml,
            "  - address: {}\n    remote_as: {}\n    source_address: {}\n    connect_retry_time: 1\n    families: [ipv4_unicast]\n",
            peer_addr(i),
            65100 + i,
            local_addr(i)
        )?;
    }
    let (mut rx_exec, mut tx_exec) = (Vec::new(), Vec::new());
    for i in 0..peers {
        rx_exec.push(format!("ip addr add {}/24 dev eth1", peer_addr(i)));
        tx_exec.push(format!("ip addr add {}/24 dev eth1", local_addr(i)));
    }
    let topo = write_topology(
        dir.path(),
        "fanout.yaml",
        "bgpbench-out",
        &[
            ("tx", "linux", None, tx_exec),
            ("rx", "bird", Some("rx.conf"), rx_exec),
        ],
        &[("tx:eth1", "rx:eth1")],
    )?;
    println!("fanout: {n} prefixes to {peers} peers (one BIRD, a session and table per peer)");
    let mut results = Vec::new();
    for &d in daemons {
        let (mut times, mut since_up) = (Vec::new(), Vec::new());
        for run in 1..=runs {
            let lab = Lab::up(&topo, UpOptions::default())?;
            let tx_dir = lab.node_dir("tx")?.to_path_buf();
            let argv: Vec<String> = match d {
                Daemon::Bird => {
                    let cfg = tx_dir.join("tx.conf");
                    std::fs::write(&cfg, &bird)?;
                    vec![
                        "bird".into(),
                        "-f".into(),
                        "-c".into(),
                        cfg.display().to_string(),
                        "-s".into(),
                        tx_dir.join("bird.ctl").display().to_string(),
                        "-P".into(),
                        tx_dir.join("bird.pid").display().to_string(),
                    ]
                }
                Daemon::Caracal => {
                    let cfg = tx_dir.join("tx.yaml");
                    let sock = tx_dir.join("caracal.sock");
                    std::fs::write(&cfg, yaml.replace("SOCK", &sock.display().to_string()))?;
                    vec![
                        caracal::lab::caracal_exe()?.display().to_string(),
                        "bgp".into(),
                        "run".into(),
                        "--config".into(),
                        cfg.display().to_string(),
                    ]
                }
            };
            let log = std::fs::File::create(tx_dir.join("daemon.log"))?;
            let t0 = Instant::now();
            let sender = Killed(
                Command::new("ip")
                    .args(["netns", "exec", lab.netns("tx")?])
                    .args(&argv)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .spawn()?,
            );
            let deadline = Instant::now() + Duration::from_secs(300);
            let mut all_up: Option<f64> = None;
            loop {
                if all_up.is_none() {
                    let up = lab
                        .cli("rx", &["show", "protocols"])?
                        .lines()
                        .filter(|l| l.contains(" BGP ") && l.contains("Established"))
                        .count();
                    if up == peers {
                        all_up = Some(t0.elapsed().as_secs_f64());
                    }
                }
                let got = accepted(&lab, "rx", Daemon::Bird)?;
                let full = got.iter().filter(|s| s.1 as usize >= n).count();
                if full == peers {
                    break;
                }
                if Instant::now() > deadline {
                    bail!(
                        "{}: {full} of {peers} peers complete after 300 s; sender log:\n{}",
                        d.name(),
                        std::fs::read_to_string(tx_dir.join("daemon.log")).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let secs = t0.elapsed().as_secs_f64();
            let up = all_up.unwrap_or(secs);
            println!(
                "{} run {run}: {secs:.3} s until all {peers} peers hold all {n} prefixes \
                 (all sessions Established at {up:.3} s)",
                d.name()
            );
            times.push(secs);
            since_up.push(secs - up);
            drop(sender);
            drop(lab);
        }
        results.push((d, median(times), median(since_up)));
    }
    println!("\nmedian of {runs} run(s):");
    println!(
        "| sender | start until {peers} peers hold {n} prefixes | of which after the last session came up |"
    );
    println!("|---|---|---|");
    for (d, t, u) in &results {
        println!("| {} | {:.3} s | {:.3} s |", d.name(), t, u);
    }
    if let (Some(c), Some(b)) = (
        results.iter().find(|r| r.0 == Daemon::Caracal),
        results.iter().find(|r| r.0 == Daemon::Bird),
    ) {
        println!("caracal / BIRD: time {:.2}x", c.1 / b.1);
    }
    Ok(())
}
