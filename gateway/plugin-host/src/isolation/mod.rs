//! Plugins in processes of their own (`isolation = "process"`, the default).
//!
//! - [`wire`]: the messages and their framing on the socket between gateway and child;
//! - [`child`]: `skyport plugin-host`, the child: limits, the loader, the relay;
//! - [`launch`]: the gateway's side: starting a child and reading its first answer;
//! - `connection`: one connection to a plugin (frames out, results and messages in),
//!   whoever is at the other end;
//! - [`supervisor`]: the gateway's side: watching a child, calls and their deadlines,
//!   crashes, restarts, stuck processes, and the isolated `plugins check`;
//! - [`remote_host`]: `skyport plugin-host --serve`, one plugin on another machine served
//!   to every gateway over mutual TLS; [`remote`]: the gateway's side of it.

pub mod child;
mod connection;
pub mod launch;
pub mod remote;
pub mod remote_host;
pub mod supervisor;
pub mod wire;
