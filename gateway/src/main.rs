//! The `skyport` binary: a thin shell over `skyport_gateway::cli`.

fn main() {
    std::process::exit(skyport_gateway::cli::run());
}
