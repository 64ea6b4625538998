//! The internal operations both front ends share. The native JSON API and the EC2 Query
//! API parse their own wire formats, call these, and render the results their own way:
//! there is one path from a tenant's request to a provider.

pub mod cpu_work;
pub mod deployments;
pub mod diagnostics;
pub mod images;
pub mod instances;
pub mod key_pairs;
pub mod metering;

use crate::call_context as context;
