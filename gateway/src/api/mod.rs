//! The front doors on the TLS listener: the native JSON API with the admin API
//! ([`native`]) and the EC2 Query API ([`ec2`]), each a
//! [`FrontDoor`](crate::stack::FrontDoor) of the one request stack; and RFC 9457 problem
//! documents ([`problem`]).

pub mod ec2;
pub mod failure_log;
pub mod native;
pub mod problem;
