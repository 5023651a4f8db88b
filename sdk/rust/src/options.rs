//! Plugin options from Python into a serde struct.

use pyo3::prelude::*;
use pyo3::types::PyString;
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

fn py_config_error(error: PyErr) -> Error {
    Error::config(format!("the plugin options are not JSON-serialisable: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Options {
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
}
