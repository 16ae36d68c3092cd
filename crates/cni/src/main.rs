//! caracal-cni: the binary a container runtime executes (CNI exec protocol).
#![forbid(unsafe_code)]

use std::io::{Read, Write};

use caracal_cni::{Code, Error, install, plugin};

fn main() {
    // With arguments it is the node installer; runtimes always call it without any.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("install") {
        std::process::exit(install(&args[1..]));
    }
    let mut stdin = Vec::new();
    let outcome =
        match std::io::stdin().read_to_end(&mut stdin) {
            Err(e) => plugin::Outcome {
                exit_code: Code::Io as i32,
                stdout: Error::io("cannot read stdin", e).to_json("1.1.0").to_string(),
            },
            // A panic must still produce an error result, never a silent crash.
            Ok(_) => std::panic::catch_unwind(|| plugin::run(|k| std::env::var(k).ok(), &stdin))
                .unwrap_or_else(|_| plugin::Outcome {
                    exit_code: 1,
                    stdout: Error::internal("internal error (panic)")
                        .to_json("1.1.0")
                        .to_string(),
                }),
        };
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(outcome.stdout.as_bytes());
    let _ = out.flush();
    std::process::exit(outcome.exit_code);
}

fn install(args: &[String]) -> i32 {
    let run = || -> caracal_cni::Result<()> {
        let o = install::Options::parse(args)?;
        let exe = std::env::current_exe().map_err(|e| Error::io("cannot find own executable", e))?;
        for path in install::install(&o, &exe)? {
            println!("installed {}", path.display());
        }
        Ok(())
    };
    match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("caracal-cni install: {e}");
            1
        }
    }
}
