//! `DryRun`: what an action would be refused for is answered as the action would answer
//! it; only a request that would succeed gets `DryRunOperation`. Nothing is done, placed
//! or recorded. Reads need no check beyond the caller's.

use super::model::named_instances;
use super::{instances, Ec2Call, Ec2Error};

/// Checks the request of action `name` as the action would, without running it.
pub(super) async fn check(name: &str, call: &Ec2Call<'_>) -> Result<(), Ec2Error> {
    match name {
        "RunInstances" => instances::check_run(call).await,
        "StartInstances"
        | "StopInstances"
        | "RebootInstances"
        | "TerminateInstances"
        | "GetConsoleOutput"
        | "ModifyInstanceAttribute"
        | "DescribeInstanceAttribute" => {
            let mut ids = call.params.list("InstanceId");
            ids.extend(call.params.get("InstanceId").map(str::to_owned));
            if ids.is_empty() {
                return Err(Ec2Error::missing("InstanceId"));
            }
            named_instances(call, &ids).await.map(|_| ())
        }
        "CreateTags" | "DeleteTags" => {
            let ids = call.params.list("ResourceId");
            if ids.is_empty() {
                return Err(Ec2Error::missing("ResourceId"));
            }
            named_instances(call, &ids).await.map(|_| ())
        }
        _ => Ok(()),
    }
}
