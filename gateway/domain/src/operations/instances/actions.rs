//! Changing an instance: start, stop, reboot, terminate, resize, tags; and its console.

use serde_json::{Map, Value};
use skyport_core::error::{Detail, ErrorKind, GatewayError, Resource};
use skyport_core::tenancy::TenantContext;

use super::{context, InstanceService};
use crate::budgets::OrderItem;
use crate::catalog::InstanceType;
use crate::inventory::lifecycle::Initiator;
use crate::inventory::InstanceRecord;

/// A state-changing instance action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start a stopped instance.
    Start,
    /// Stop a running instance.
    Stop,
    /// Reboot a running instance.
    Reboot,
    /// Terminate (irreversible).
    Terminate,
}

impl Action {
    /// `start`, `stop`, `reboot` or `terminate` (also the lifecycle event's action).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Reboot => "reboot",
            Self::Terminate => "terminate",
        }
    }

    /// The action named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "start" => Some(Self::Start),
            "stop" => Some(Self::Stop),
            "reboot" => Some(Self::Reboot),
            "terminate" => Some(Self::Terminate),
            _ => None,
        }
    }

    fn op(self) -> &'static str {
        match self {
            Self::Start => "instance.start",
            Self::Stop => "instance.stop",
            Self::Reboot => "instance.reboot",
            Self::Terminate => "instance.terminate",
        }
    }
}

/// 409 for instance `id`, which is `why`.
pub(super) fn wrong_state(why: String) -> GatewayError {
    GatewayError::new(ErrorKind::Conflict, why).with_detail(Detail::WrongState(Resource::Instance))
}

impl InstanceService {
    /// Runs `action` on the tenant's instance `id`; returns the state before and the
    /// record after. A terminated instance refuses every action (409).
    pub async fn act(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        id: &str,
        action: Action,
    ) -> Result<(String, InstanceRecord), GatewayError> {
        let record = self.get(ctx, request_id, id).await?;
        let previous = record.state.clone();
        if record.state == "terminated" {
            return Err(wrong_state(format!("instance {id} is terminated")));
        }
        let Some(remote) = record.remote_id.clone() else {
            return self.act_on_unfinished(record, action).await;
        };
        if action == Action::Start && record.state == "stopped" {
            self.check_start_budget(ctx, request_id, &record).await?;
        }
        let claim = self.claims.claim(&record.id)?;
        let answer = self
            .provider(&record.provider, &record.region, context(ctx, request_id))
            .act(action.op(), &remote)
            .await?;
        let new_state = answer.state;
        self.inventory
            .update(&record.id, None, &new_state, None)
            .await?;
        let mut record = InstanceRecord {
            state: new_state,
            ..record
        };
        self.record_network(&mut record, answer.network).await?;
        self.meter
            .emit(&record, action.as_str(), Initiator::Api)
            .await;
        drop(claim);
        Ok((previous, record))
    }

    /// Refuses starting stopped `record` when its hours to the month's end would take an
    /// `enforce` budget past its amount (its quota is already counted: stopped instances
    /// count).
    async fn check_start_budget(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        record: &InstanceRecord,
    ) -> Result<(), GatewayError> {
        let Some(budgets) = &self.budgets else {
            return Ok(());
        };
        let item = OrderItem {
            instance_type: record.instance_type.clone(),
            provider: record.provider.clone(),
            lease_secs: None,
        };
        budgets
            .check_now(ctx, request_id, record.department.as_deref(), &[item])
            .await
    }

    /// Changes the type of a stopped instance (409 otherwise, whatever the provider would
    /// accept); the next start uses the new size.
    pub async fn resize(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        id: &str,
        itype: InstanceType,
    ) -> Result<InstanceRecord, GatewayError> {
        let record = self.get(ctx, request_id, id).await?;
        if record.state != "stopped" {
            return Err(wrong_state(format!(
                "instance {id} is {}; stop it before changing its type",
                record.state
            )));
        }
        let remote = record.remote_id.clone().unwrap_or_default();
        let _claim = self.claims.claim(&record.id)?;
        self.provider(&record.provider, &record.region, context(ctx, request_id))
            .resize(&remote, itype)
            .await?;
        self.inventory
            .update(
                &record.id,
                None,
                &record.state,
                Some(itype.name.to_string()),
            )
            .await?;
        let record = InstanceRecord {
            instance_type: itype.name.to_string(),
            ..record
        };
        self.meter.emit(&record, "resize", Initiator::Api).await;
        Ok(record)
    }

    /// The tail of the instance's serial console.
    pub async fn console(
        &self,
        ctx: &TenantContext,
        request_id: &str,
        id: &str,
    ) -> Result<(InstanceRecord, String), GatewayError> {
        let record = self.lookup(ctx, id).await?;
        let remote = record
            .remote_id
            .clone()
            .ok_or_else(|| wrong_state(format!("instance {id} is still being created")))?;
        let output = self
            .provider(&record.provider, &record.region, context(ctx, request_id))
            .console(&remote)
            .await?;
        Ok((record, output))
    }

    /// An action on an instance whose create never finished (no provider id): 409 while
    /// its create may still be running; once that cannot be (twice the provider deadline
    /// after its creation), terminate closes the record (no VM was recorded, nothing was
    /// metered) so that a create cut short by a crash never leaves an instance stuck.
    async fn act_on_unfinished(
        &self,
        record: InstanceRecord,
        action: Action,
    ) -> Result<(String, InstanceRecord), GatewayError> {
        let id = record.id.clone();
        let created = humantime::parse_rfc3339(&record.created_at).ok();
        let settled = created.is_some_and(|t| {
            self.clock
                .wall()
                .duration_since(t)
                .is_ok_and(|age| age > 2 * super::PROVIDER_TIMEOUT)
        });
        if action != Action::Terminate || !settled {
            return Err(wrong_state(format!("instance {id} is still being created")));
        }
        // Held while it is terminated: a recovery of the same create at start waits.
        let _claim = self.claims.claim(&id)?;
        let previous = record.state.clone();
        self.inventory
            .update(&record.id, None, "terminated", None)
            .await?;
        self.inventory.set_network(&record.id, None).await?;
        tracing::warn!(instance = %id, provider = %record.provider, "an instance whose create never finished was terminated; it had no VM on record");
        Ok((
            previous,
            InstanceRecord {
                state: "terminated".into(),
                ..record
            },
        ))
    }

    /// Makes the tags of the tenant's instance `id` exactly `tags`, in one write (no
    /// provider call): of two replacements at once, the later one wins whole.
    pub async fn replace_tags(
        &self,
        ctx: &TenantContext,
        id: &str,
        tags: Map<String, Value>,
    ) -> Result<InstanceRecord, GatewayError> {
        let mut record = self.lookup(ctx, id).await?;
        super::tags::check(&tags)?;
        self.inventory.set_tags(&record.id, tags.clone()).await?;
        record.tags = tags;
        Ok(record)
    }

    /// Adds or overwrites `set` and removes `remove` (a key, optionally only when its
    /// value matches) on the tenant's instance `id`.
    pub async fn change_tags(
        &self,
        ctx: &TenantContext,
        id: &str,
        set: &[(String, String)],
        remove: &[(String, Option<String>)],
    ) -> Result<InstanceRecord, GatewayError> {
        let mut record = self.lookup(ctx, id).await?;
        for (key, value) in set {
            record
                .tags
                .insert(key.clone(), Value::String(value.clone()));
        }
        for (key, value) in remove {
            let matches = match value {
                None => true,
                Some(v) => record.tags.get(key).and_then(Value::as_str) == Some(v.as_str()),
            };
            if matches {
                record.tags.remove(key);
            }
        }
        super::tags::check(&record.tags)?;
        self.inventory
            .set_tags(&record.id, record.tags.clone())
            .await?;
        Ok(record)
    }
}
