//! The whole configuration check (`skyport config check`, and `skyport serve` at start):
//! TOML, the schema, the catalog's references and values, the placement rules. Any text
//! is accepted or refused with errors that name their key; never a panic. A configuration
//! that passes the check must also pass it again (the check is a pure function).
#![no_main]

use libfuzzer_sys::fuzz_target;
use skyport_domain::config_check;

fuzz_target!(|text: &str| {
    match config_check::parse(text) {
        Ok(config) => {
            assert!(
                config.check().is_empty(),
                "a checked configuration fails its own check"
            );
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "refused without a reason");
        }
    }
});
