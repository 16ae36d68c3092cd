//! caracal-cni: a point-to-point /32 CNI plugin.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(1);
}
