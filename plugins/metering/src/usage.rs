//! Usage: from an instance's lifecycle events to the time it ran, with which capacity.
//!
//! Events are replayed in event-time order (not arrival order), so a stop that arrives
//! before its start still closes the right interval. Compute is billed from `run`/`start`
//! to `stop`/`terminate`; stopped time is not compute. A capacity change while running
//! closes one slice and opens the next at the same instant, so slices never overlap or
//! leave a gap.
//!
//! Slices are then cut at interval boundaries (multiples of the metering interval since
//! the Unix epoch, 1 h by default) into usage records: a resource whose whole run fits in
//! one interval gets one `short-lived` record with its exact start and stop; a longer one
//! gets an `instance-started` record for its first interval and `instance-active` records
//! for each later one.

use serde::Serialize;
use time::OffsetDateTime;

/// What an instance runs as during a slice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capacity {
    /// Skyport instance type (the SKU).
    pub instance_type: String,
    /// vCPUs.
    pub vcpus: u64,
    /// Memory in MiB.
    pub memory_mib: u64,
}

/// One lifecycle event, as usage needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    /// Event time (UTC).
    pub time: OffsetDateTime,
    /// `run`, `start`, `stop`, `reboot`, `resize`, `terminate`, `discovered`, `vanished`.
    pub event: String,
    /// Capacity the event reports.
    pub capacity: Capacity,
}

/// Why a slice exists without the usual events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Exception {
    /// Found running by group sync with no run/start event: metered from first detection.
    DiscoveredWithoutStart,
    /// Gone from group sync with no stop/terminate: a termination was synthesized at the
    /// last time it was seen.
    VanishedWithoutStop,
}

/// A span of running time at one capacity, `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slice {
    /// Start (inclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// End (exclusive).
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    /// Capacity during the slice.
    pub capacity: Capacity,
    /// Whether the instance was still running at `end` (the slice is cut at "now").
    pub open: bool,
    /// Exceptions that apply.
    pub exceptions: Vec<Exception>,
}

impl Slice {
    /// Length in whole milliseconds.
    pub fn millis(&self) -> i128 {
        (self.end - self.start).whole_milliseconds()
    }
}

/// Replays `events` (any order) into running slices; a slice still running is cut at
/// `until`.
pub fn running_slices(events: &[LifecycleEvent], until: OffsetDateTime) -> Vec<Slice> {
    let mut events: Vec<&LifecycleEvent> = events.iter().collect();
    // Stable: same-time events keep ledger order.
    events.sort_by_key(|e| e.time);
    let mut slices = Vec::new();
    let mut running: Option<(OffsetDateTime, Capacity, Vec<Exception>)> = None;
    let close = |slices: &mut Vec<Slice>,
                 running: &mut Option<(OffsetDateTime, Capacity, Vec<Exception>)>,
                 at: OffsetDateTime,
                 extra: Option<Exception>| {
        if let Some((start, capacity, mut exceptions)) = running.take() {
            exceptions.extend(extra);
            if at > start {
                slices.push(Slice {
                    start,
                    end: at,
                    capacity,
                    open: false,
                    exceptions,
                });
            }
        }
    };
    for event in events {
        match event.event.as_str() {
            "run" | "start" | "discovered" if running.is_none() => {
                let exceptions = if event.event == "discovered" {
                    vec![Exception::DiscoveredWithoutStart]
                } else {
                    vec![]
                };
                running = Some((event.time, event.capacity.clone(), exceptions));
            }
            "stop" | "terminate" => close(&mut slices, &mut running, event.time, None),
            "vanished" => close(
                &mut slices,
                &mut running,
                event.time,
                Some(Exception::VanishedWithoutStop),
            ),
            "resize" => {
                if let Some((_, capacity, exceptions)) = &running {
                    if *capacity != event.capacity {
                        let exceptions = exceptions.clone();
                        close(&mut slices, &mut running, event.time, None);
                        running = Some((event.time, event.capacity.clone(), exceptions));
                    }
                }
            }
            _ => {}
        }
    }
    if let Some((start, capacity, exceptions)) = running {
        if until > start {
            slices.push(Slice {
                start,
                end: until,
                capacity,
                open: true,
                exceptions,
            });
        }
    }
    slices
}

/// Cuts every slice at the instants in `cuts` (sorted or not), so no slice spans one.
pub fn cut_slices(slices: Vec<Slice>, cuts: &[OffsetDateTime]) -> Vec<Slice> {
    let mut out = Vec::with_capacity(slices.len());
    for slice in slices {
        let mut inner: Vec<OffsetDateTime> = cuts
            .iter()
            .copied()
            .filter(|c| *c > slice.start && *c < slice.end)
            .collect();
        inner.sort();
        inner.dedup();
        let mut start = slice.start;
        for cut in inner {
            out.push(Slice {
                start,
                end: cut,
                open: false,
                ..slice.clone()
            });
            start = cut;
        }
        out.push(Slice { start, ..slice });
    }
    out
}

/// Kind of usage record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordKind {
    /// The whole run fits in one interval: exact start and stop.
    ShortLived,
    /// The first interval of a longer run.
    InstanceStarted,
    /// A later interval of a longer run.
    InstanceActive,
}

/// One usage record: an interval of one resource, with its slices inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageRecord {
    /// Kind.
    pub kind: RecordKind,
    /// Interval start (for `short-lived`: the run's exact start).
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// Interval end, exclusive (for `short-lived`: the run's exact stop).
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
    /// Running slices inside it.
    pub slices: Vec<Slice>,
}

/// Groups slices into usage records over intervals of `interval_secs`.
pub fn usage_records(slices: &[Slice], interval_secs: i64) -> Vec<UsageRecord> {
    let interval_secs = interval_secs.max(1);
    let interval_of = |t: OffsetDateTime| t.unix_timestamp().div_euclid(interval_secs);
    let at = |k: i64| {
        OffsetDateTime::from_unix_timestamp(k * interval_secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    let mut boundaries = Vec::new();
    if let (Some(first), Some(last)) = (slices.first(), slices.last()) {
        for k in interval_of(first.start)..=interval_of(last.end) {
            boundaries.push(at(k));
        }
    }
    let cut = cut_slices(slices.to_vec(), &boundaries);
    // Runs: maximal chains of slices that touch (a capacity change keeps the run going).
    let mut records: Vec<UsageRecord> = Vec::new();
    let mut run_start: Option<OffsetDateTime> = None;
    let mut previous_end: Option<OffsetDateTime> = None;
    for slice in cut {
        if previous_end != Some(slice.start) {
            run_start = Some(slice.start);
        }
        previous_end = Some(slice.end);
        let k = interval_of(slice.start);
        let same_record = records.last().is_some_and(|r| {
            r.slices.last().is_some_and(|s| s.end == slice.start)
                && interval_of(r.slices[0].start) == k
        });
        if same_record {
            if let Some(record) = records.last_mut() {
                record.slices.push(slice);
            }
            continue;
        }
        let first_of_run = run_start == Some(slice.start);
        records.push(UsageRecord {
            kind: if first_of_run {
                RecordKind::InstanceStarted
            } else {
                RecordKind::InstanceActive
            },
            start: at(k),
            end: at(k + 1),
            slices: vec![slice],
        });
    }
    // A run that is one record only, and ends inside its interval, is short-lived.
    let mut i = 0;
    while i < records.len() {
        let run_continues = records.get(i + 1).is_some_and(|next| {
            next.kind == RecordKind::InstanceActive
                && records[i].slices.last().map(|s| s.end) == next.slices.first().map(|s| s.start)
        });
        let record = &mut records[i];
        let last = record.slices.last().cloned();
        if record.kind == RecordKind::InstanceStarted && !run_continues {
            if let Some(last) = last.filter(|s| !s.open) {
                record.kind = RecordKind::ShortLived;
                record.start = record.slices[0].start;
                record.end = last.end;
            }
        }
        i += 1;
    }
    records
}

#[cfg(test)]
impl LifecycleEvent {
    /// A test event: `event` at `time`, reporting `instance_type` with this size.
    pub(crate) fn sample(
        time: OffsetDateTime,
        event: &str,
        instance_type: &str,
        vcpus: u64,
        memory_mib: u64,
    ) -> Self {
        Self {
            time,
            event: event.into(),
            capacity: Capacity {
                instance_type: instance_type.into(),
                vcpus,
                memory_mib,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn event(time: OffsetDateTime, event: &str, instance_type: &str) -> LifecycleEvent {
        LifecycleEvent::sample(time, event, instance_type, 1, 128)
    }

    /// METERING.md case 2: a stop that arrives before its start.
    #[test]
    fn stop_before_start_closes_one_interval_once_both_arrived() {
        let stop = event(datetime!(2026-11-03 10:30 UTC), "stop", "sp.micro");
        let start = event(datetime!(2026-11-03 10:00 UTC), "run", "sp.micro");
        let until = datetime!(2026-11-03 12:00 UTC);
        // Only the stop so far: nothing open, nothing negative.
        assert!(running_slices(std::slice::from_ref(&stop), until).is_empty());
        let slices = running_slices(&[stop, start], until);
        assert_eq!(slices.len(), 1);
        assert_eq!(slices[0].start, datetime!(2026-11-03 10:00 UTC));
        assert_eq!(slices[0].end, datetime!(2026-11-03 10:30 UTC));
        assert!(!slices[0].open);
    }

    /// METERING.md case 4: a capacity change inside an interval gives two slices, no gap
    /// or overlap, and durations that sum to the whole.
    #[test]
    fn a_capacity_change_splits_the_interval_into_two_slices() {
        let events = [
            event(datetime!(2026-11-03 10:10 UTC), "run", "sp.micro"),
            event(datetime!(2026-11-03 10:25 UTC), "resize", "sp.large"),
            event(datetime!(2026-11-03 10:50 UTC), "stop", "sp.large"),
        ];
        let slices = running_slices(&events, datetime!(2026-11-03 12:00 UTC));
        assert_eq!(slices.len(), 2);
        assert_eq!(slices[0].end, slices[1].start);
        assert_eq!(slices[0].capacity.instance_type, "sp.micro");
        assert_eq!(slices[1].capacity.instance_type, "sp.large");
        assert_eq!(slices[0].millis() + slices[1].millis(), 40 * 60 * 1000);
        let records = usage_records(&slices, 3600);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].kind, RecordKind::ShortLived);
        assert_eq!(records[0].slices.len(), 2);
    }

    #[test]
    fn long_runs_get_started_then_active_records_and_stopped_time_is_not_compute() {
        let events = [
            event(datetime!(2026-11-03 10:30 UTC), "run", "sp.micro"),
            event(datetime!(2026-11-03 12:15 UTC), "stop", "sp.micro"),
            event(datetime!(2026-11-03 13:00 UTC), "start", "sp.micro"),
            event(datetime!(2026-11-03 13:20 UTC), "terminate", "sp.micro"),
        ];
        let slices = running_slices(&events, datetime!(2026-11-03 18:00 UTC));
        let records = usage_records(&slices, 3600);
        let kinds: Vec<_> = records.iter().map(|r| (r.kind, r.start, r.end)).collect();
        assert_eq!(
            kinds,
            [
                (
                    RecordKind::InstanceStarted,
                    datetime!(2026-11-03 10:00 UTC),
                    datetime!(2026-11-03 11:00 UTC)
                ),
                (
                    RecordKind::InstanceActive,
                    datetime!(2026-11-03 11:00 UTC),
                    datetime!(2026-11-03 12:00 UTC)
                ),
                (
                    RecordKind::InstanceActive,
                    datetime!(2026-11-03 12:00 UTC),
                    datetime!(2026-11-03 13:00 UTC)
                ),
                (
                    RecordKind::ShortLived,
                    datetime!(2026-11-03 13:00 UTC),
                    datetime!(2026-11-03 13:20 UTC)
                ),
            ]
        );
        let total: i128 = slices.iter().map(Slice::millis).sum();
        assert_eq!(
            total,
            (105 + 20) * 60 * 1000,
            "the stopped 45 minutes are not billed"
        );
    }

    /// METERING.md cases 6 and 7: discovered and vanished resources.
    #[test]
    fn discovered_and_vanished_resources_are_flagged() {
        let events = [
            event(datetime!(2026-11-03 10:00 UTC), "discovered", "sp.micro"),
            event(datetime!(2026-11-03 10:40 UTC), "vanished", "sp.micro"),
            event(datetime!(2026-11-03 11:00 UTC), "stop", "sp.micro"),
        ];
        let slices = running_slices(&events, datetime!(2026-11-03 12:00 UTC));
        assert_eq!(slices.len(), 1);
        assert_eq!(slices[0].end, datetime!(2026-11-03 10:40 UTC));
        assert_eq!(
            slices[0].exceptions,
            [
                Exception::DiscoveredWithoutStart,
                Exception::VanishedWithoutStop
            ]
        );
    }

    #[test]
    fn a_running_instance_is_cut_at_until_and_marked_open() {
        let events = [event(datetime!(2026-11-03 10:00 UTC), "run", "sp.micro")];
        let slices = running_slices(&events, datetime!(2026-11-03 10:45 UTC));
        assert_eq!(slices.len(), 1);
        assert!(slices[0].open);
        let records = usage_records(&slices, 3600);
        assert_eq!(records[0].kind, RecordKind::InstanceStarted);
    }
}
