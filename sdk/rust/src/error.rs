//! Errors that cross into Python as the right exception, with a one-paragraph message.

use std::any::Any;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::{PyConnectionError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};
use pyo3::PyTypeInfo;

/// What kind of failure an [`Error`] is; decides the Python exception it becomes.
///
/// Inside Dativo (when `dativo.errors` is importable) the kinds map to its error hierarchy, which
/// the engine turns into exit codes and uses to decide on fallback. Elsewhere they map to builtins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad options or settings: `dativo.errors.ConfigError` (`ValueError` outside Dativo). The
    /// engine does not fall back on these: the built-in would meet the same mistake.
    Config,
    /// The source cannot be reached or refused the credentials: `dativo.errors.ConnectionFailed`
    /// (`ConnectionError`).
    Connection,
    /// Reading failed (a driver error, a value that does not fit its column):
    /// `dativo.errors.PluginFailed` (`RuntimeError`).
    Read,
    /// Writing failed (the target refused a file, a disk is full): `dativo.errors.PluginFailed` of
    /// the writer (`RuntimeError`).
    Write,
    /// The data does not match the declared schema: `dativo.errors.SchemaMismatch`
    /// (`RuntimeError`).
    Schema,
    /// Rust code panicked; the panic was caught: `dativo.errors.PluginFailed` (`RuntimeError`).
    Panic,
    /// The consumer closed the stream, so the producer should stop. Never shown to anyone.
    Cancelled,
}

type TypeObject = for<'py> fn(Python<'py>) -> Bound<'py, PyType>;

/// An error of a plugin: a kind, a message and an optional hint (what the user should do).
///
/// Convert it into a [`PyErr`] with `?` or `.into()` to raise it. Messages never contain NUL bytes
/// (they travel through the Arrow C stream's `get_last_error` as C strings).
#[derive(Clone)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    hint: Option<String>,
    python_type: Option<TypeObject>,
}

/// `Result<T, dativo_plugin::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// [`ErrorKind::Write`]: a writer could not write.
    pub fn write(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Write, message)
    }

    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let message: String = message.into();
        Self {
            kind,
            message: message.replace('\0', "\\0"),
            hint: None,
            python_type: None,
        }
    }

    /// [`ErrorKind::Config`].
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// [`ErrorKind::Connection`].
    pub fn connection(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Connection, message)
    }

    /// [`ErrorKind::Read`].
    pub fn read(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Read, message)
    }

    /// [`ErrorKind::Schema`].
    pub fn schema(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Schema, message)
    }

    /// [`ErrorKind::Cancelled`]: what [`crate::BatchSink::send`] returns once the consumer is gone.
    pub fn cancelled() -> Self {
        Self::new(ErrorKind::Cancelled, "the consumer closed the stream")
    }

    /// An error raised as the plugin's own Python exception class `T` (made with
    /// [`pyo3::create_exception!`]), constructed with the message as its only argument.
    ///
    /// Useful when the plugin's Python side wants to tell errors apart, e.g. to redact and rephrase
    /// driver errors. Its kind is [`ErrorKind::Read`].
    pub fn python<T: PyTypeInfo>(message: impl Into<String>) -> Self {
        let mut error = Self::read(message);
        error.python_type = Some(T::type_object);
        error
    }

    /// The error for a caught panic, with the panic's message.
    pub fn from_panic(payload: Box<dyn Any + Send>) -> Self {
        let text = if let Some(text) = payload.downcast_ref::<&str>() {
            (*text).to_string()
        } else if let Some(text) = payload.downcast_ref::<String>() {
            text.clone()
        } else {
            "a non-text panic payload".to_string()
        };
        Self::new(ErrorKind::Panic, format!("the Rust code panicked: {text}"))
            .with_hint("This is a bug in the plugin; report it with the job's --debug output.")
    }

    /// Add what the user should do about it.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        let hint: String = hint.into();
        self.hint = Some(hint.replace('\0', "\\0"));
        self
    }

    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the hint.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The hint, if any.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }

    /// The Python exception for this error (attaches to the interpreter if needed).
    pub fn to_pyerr(&self, py: Python<'_>) -> PyErr {
        if let Some(type_object) = self.python_type {
            return PyErr::from_type(type_object(py), (self.to_string(),));
        }
        let (name, role) = match self.kind {
            ErrorKind::Config => ("ConfigError", None),
            ErrorKind::Connection => ("ConnectionFailed", None),
            ErrorKind::Schema => ("SchemaMismatch", Some("reader")),
            ErrorKind::Write => ("PluginFailed", Some("writer")),
            ErrorKind::Read | ErrorKind::Panic | ErrorKind::Cancelled => ("PluginFailed", Some("reader")),
        };
        match self.dativo_error(py, name, role) {
            Ok(error) => error,
            // Outside Dativo (a notebook, a test of the bare extension): builtin exceptions.
            Err(_) => match self.kind {
                ErrorKind::Config => PyValueError::new_err(self.to_string()),
                ErrorKind::Connection => PyConnectionError::new_err(self.to_string()),
                _ => PyRuntimeError::new_err(self.to_string()),
            },
        }
    }

    fn dativo_error(&self, py: Python<'_>, name: &str, role: Option<&str>) -> PyResult<PyErr> {
        let class = py.import("dativo.errors")?.getattr(name)?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("hint", self.hint.as_deref())?;
        if let Some(role) = role {
            kwargs.set_item("role", role)?;
        }
        let instance = class.call((self.message.as_str(),), Some(&kwargs))?;
        Ok(PyErr::from_value(instance))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            let stop = if self.message.ends_with(['.', '?', '!']) {
                ""
            } else {
                "."
            };
            write!(f, "{stop} {hint}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("hint", &self.hint)
            .finish()
    }
}

impl std::error::Error for Error {}

impl From<Error> for PyErr {
    fn from(error: Error) -> PyErr {
        Python::attach(|py| error.to_pyerr(py))
    }
}

/// Run `f`, turning a panic into an [`ErrorKind::Panic`] error instead of unwinding further.
///
/// Use it around the body of every `#[pyfunction]` that does real work: PyO3 would otherwise raise
/// `pyo3_runtime.PanicException`, a `BaseException` that `except Exception` does not catch. Work
/// run by [`crate::spawn`] is already guarded.
pub fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(Error::from_panic(payload)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_joins_message_and_hint() {
        let error = Error::read("it broke").with_hint("Fix it.");
        assert_eq!(error.to_string(), "it broke. Fix it.");
        assert_eq!(Error::read("why?").with_hint("Ask.").to_string(), "why? Ask.");
    }

    #[test]
    fn nul_bytes_never_reach_c_strings() {
        let error = Error::read("a\0b").with_hint("c\0");
        assert!(!error.to_string().contains('\0'));
    }

    #[test]
    fn panics_become_errors() {
        let result: Result<()> = catch_panic(|| panic!("boom {}", 42));
        let error = result.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Panic);
        assert!(error.message().contains("boom 42"), "{error}");
    }
}
