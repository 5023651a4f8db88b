//! Plugin options, declared once as a Rust struct: its JSON Schema for the host, its values from Python.
//!
//! Derive `serde::Deserialize`, `serde::Serialize` and `schemars::JsonSchema` on one struct, with
//! `#[serde(deny_unknown_fields, default)]` and a `Default` impl. [`options_schema`] publishes it: the
//! Python class of the plugin builds its `Config` from that schema
//! (`dativo.api.config_from_schema`), so the host checks the job's options (YAML line, "did you
//! mean") before the plugin starts and `dativo plugins info` shows them, with the doc comments as
//! descriptions and the `Default` values as defaults. [`options_from_py`] then turns the same options
//! into the struct on the Rust side.

use pyo3::prelude::*;
use pyo3::types::PyString;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Deserialize options given as a Python `dict` (or any JSON-serialisable value, a pydantic model,
/// `None` for "no options") or as a JSON string into `T`.
///
/// Use `#[serde(deny_unknown_fields)]` and `#[serde(default)]` on `T` so that a misspelled option is
/// an error and missing ones take their defaults.
///
/// ```
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields, default)]
/// struct Options { batch_rows: usize }
/// impl Default for Options { fn default() -> Self { Self { batch_rows: 65_536 } } }
/// ```
///
/// # Errors
/// [`Error::config`] with serde's message (which names the offending option).
pub fn options_from_py<T: DeserializeOwned>(obj: &Bound<'_, PyAny>) -> Result<T> {
    let json = if obj.is_none() {
        "{}".to_string()
    } else if let Ok(text) = obj.cast::<PyString>() {
        text.to_string()
    } else if obj.hasattr("model_dump_json").unwrap_or(false) {
        obj.call_method0("model_dump_json")
            .and_then(|j| j.extract::<String>())
            .map_err(py_config_error)?
    } else {
        let json = obj.py().import("json").map_err(py_config_error)?;
        json.call_method1("dumps", (obj,))
            .and_then(|j| j.extract::<String>())
            .map_err(py_config_error)?
    };
    options_from_json(&json)
}

/// Deserialize options from a JSON document.
///
/// # Errors
/// [`Error::config`] with serde's message.
pub fn options_from_json<T: DeserializeOwned>(json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| Error::config(format!("invalid plugin options: {e}")))
}

/// The JSON Schema of the options struct `T`, as a JSON document.
///
/// Doc comments become `description`s; with `#[serde(default)]` on the struct (and `Serialize`), the
/// values of its `Default` become `default`s; `#[serde(deny_unknown_fields)]` becomes
/// `additionalProperties: false`; `#[schemars(range(min = 1))]` and the like become bounds, which the
/// host enforces too.
///
/// ```
/// #[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema)]
/// #[serde(deny_unknown_fields, default)]
/// struct Options {
///     /// Rows per Arrow batch.
///     #[schemars(range(min = 1))]
///     batch_rows: u32,
/// }
/// impl Default for Options { fn default() -> Self { Self { batch_rows: 65_536 } } }
///
/// let schema: serde_json::Value = serde_json::from_str(&dativo_plugin::options_schema::<Options>()).unwrap();
/// assert_eq!(schema["properties"]["batch_rows"]["default"], 65_536);
/// assert_eq!(schema["additionalProperties"], false);
/// ```
pub fn options_schema<T: JsonSchema>() -> String {
    serde_json::to_string(&schemars::schema_for!(T)).expect("a JSON Schema is always serialisable")
}

fn py_config_error(error: PyErr) -> Error {
    Error::config(format!("the plugin options are not JSON-serialisable: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test's options.
    #[derive(serde::Deserialize, serde::Serialize, schemars::JsonSchema, Debug, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Options {
        /// Rows per batch.
        #[schemars(range(min = 1))]
        batch_rows: usize,
        label: String,
    }

    impl Default for Options {
        fn default() -> Self {
            Self {
                batch_rows: 10,
                label: "x".into(),
            }
        }
    }

    #[test]
    fn defaults_and_unknown_keys() {
        let options: Options = options_from_json(r#"{"batch_rows": 5}"#).unwrap();
        assert_eq!(
            options,
            Options {
                batch_rows: 5,
                label: "x".into()
            }
        );
        let error = options_from_json::<Options>(r#"{"batch_row": 5}"#).unwrap_err();
        assert!(error.message().contains("unknown field `batch_row`"), "{error}");
    }

    #[test]
    fn the_schema_says_what_serde_accepts() {
        let schema: serde_json::Value = serde_json::from_str(&options_schema::<Options>()).unwrap();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(schema["description"], "A test's options.");
        let rows = &schema["properties"]["batch_rows"];
        assert_eq!((rows["type"].as_str(), rows["minimum"].as_i64()), (Some("integer"), Some(1)));
        assert_eq!((rows["default"].as_i64(), rows["description"].as_str()), (Some(10), Some("Rows per batch.")));
        assert_eq!(schema["properties"]["label"]["default"], "x");
        assert!(schema.get("required").is_none(), "every option has a default: {schema}");
    }
}
