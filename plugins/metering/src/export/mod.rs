//! Record handlers: a bill rendered for a downstream system. Each handler is one module
//! behind [`RecordHandler`]; adding a format touches neither the ledger nor the bill.

mod csr;
mod focus;

use crate::bill::Bill;

/// Turns a bill into one downstream format.
pub trait RecordHandler: Sync {
    /// The `format=` name.
    fn name(&self) -> &'static str;
    /// The HTTP content type of the rendering.
    fn content_type(&self) -> &'static str;
    /// The rendering.
    fn render(&self, bill: &Bill) -> Result<String, String>;
}

struct Json;

impl RecordHandler for Json {
    fn name(&self) -> &'static str {
        "json"
    }
    fn content_type(&self) -> &'static str {
        "application/json"
    }
    fn render(&self, bill: &Bill) -> Result<String, String> {
        serde_json::to_string(bill).map_err(|e| e.to_string())
    }
}

/// Every handler, by `format=` name.
pub fn handlers() -> [&'static dyn RecordHandler; 3] {
    [&Json, &focus::Focus, &csr::Csr]
}

/// The handler named `format`, or an error naming the choices.
pub fn handler(format: &str) -> Result<&'static dyn RecordHandler, String> {
    handlers()
        .into_iter()
        .find(|h| h.name() == format)
        .ok_or_else(|| {
            let names: Vec<&str> = handlers().iter().map(|h| h.name()).collect();
            format!(
                "format '{format}' is not available; use {}",
                names.join(", ")
            )
        })
}

/// `YYYY-MM-DDTHH:mm:ssZ`, rounded down to the second (FOCUS's timestamp format).
pub(crate) fn focus_time(time: time::OffsetDateTime) -> String {
    let t = time.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}
