//! How a checked batch is written to the PostgreSQL ledger: streamed in by binary `COPY`,
//! or inserted skipping known ids, and its refusals audited.

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::GenericClient;
use skyport_plugin_api::ops::MeterEvent;

use super::CheckedBatch;

/// The columns a batch writes, in `COPY`'s order.
const EVENT_COLUMNS: &str = "id, type, time, tenant, department, attributes, received_at";

/// Streams `batch`'s valid events into the table; fails as a whole on a known id.
pub(super) fn copy_events(
    tx: &mut impl GenericClient,
    batch: &CheckedBatch,
    received_at: &str,
) -> Result<usize, postgres::Error> {
    if batch.valid.is_empty() {
        return Ok(0);
    }
    let sink = tx.copy_in(&format!(
        "COPY metering_events ({EVENT_COLUMNS}) FROM STDIN BINARY"
    ))?;
    let mut writer = BinaryCopyInWriter::new(sink, &[Type::TEXT; 7]);
    for (event, time) in &batch.valid {
        let attributes = event.attributes.to_string();
        writer.write(&[
            &event.id,
            &event.record_type,
            time,
            &event.tenant,
            &event.department,
            &attributes,
            &received_at,
        ])?;
    }
    Ok(writer.finish()? as usize)
}

/// Inserts `batch`'s valid events whose ids are not stored yet; how many were new.
pub(super) fn insert_new_events(
    tx: &mut postgres::Transaction<'_>,
    batch: &CheckedBatch,
    received_at: &str,
) -> Result<usize, postgres::Error> {
    if batch.valid.is_empty() {
        return Ok(0);
    }
    let column = |f: fn(&(MeterEvent, String)) -> Option<&str>| -> Vec<Option<&str>> {
        batch.valid.iter().map(f).collect()
    };
    let attributes: Vec<String> = batch
        .valid
        .iter()
        .map(|(e, _)| e.attributes.to_string())
        .collect();
    let stored = tx.execute(
        &format!(
            "INSERT INTO metering_events ({EVENT_COLUMNS})
             SELECT id, type, time, tenant, department, attributes, $7
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[])
                  AS b(id, type, time, tenant, department, attributes)
             ON CONFLICT (id) DO NOTHING"
        ),
        &[
            &column(|(e, _)| Some(e.id.as_str())),
            &column(|(e, _)| Some(e.record_type.as_str())),
            &column(|(_, t)| Some(t.as_str())),
            &column(|(e, _)| Some(e.tenant.as_str())),
            &column(|(e, _)| e.department.as_deref()),
            &attributes,
            &received_at,
        ],
    )?;
    Ok(stored as usize)
}

/// Audits `batch`'s refusals.
pub(super) fn audit_refusals(
    tx: &mut postgres::Transaction<'_>,
    batch: &CheckedBatch,
    received_at: &str,
) -> Result<(), postgres::Error> {
    for refusal in &batch.refused {
        tx.execute(
            "INSERT INTO metering_rejections (event_id, type, reason, event, received_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &refusal.id,
                &refusal.record_type,
                &refusal.reason,
                &refusal.raw,
                &received_at,
            ],
        )?;
    }
    Ok(())
}
