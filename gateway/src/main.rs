//! The `skyport` binary: a thin shell over `skyport_gateway::cli`.
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(skyport_gateway::cli::run());
}
