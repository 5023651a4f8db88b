//! # dativo-plugin: Dativo readers and writers in Rust
//!
//! A Dativo reader is a Python class (`dativo.api.Reader`) whose `read(split)` returns anything
//! with `__arrow_c_stream__`; a writer's `write(split, stream)` is handed one. This crate makes the
//! Rust half of such a plugin a few dozen lines:
//!
//! - [`spawn`] / [`from_iter`] run your batch producer on a background thread, **without the
//!   GIL**, at most [`PREFETCH`] batches ahead of the consumer (decoding overlaps the engine's
//!   writing, memory stays flat), and return an [`ArrowStream`]: a Python object with
//!   `__arrow_c_stream__` (zero copy into pyarrow) that is also an iterator of [`ArrowBatch`].
//! - [`Error`] carries a kind ([`ErrorKind`]) that becomes the matching `dativo.errors` exception
//!   (`ConfigError`, `ConnectionFailed`, `PluginFailed`, `SchemaMismatch`), or your own exception
//!   class ([`Error::python`]). Panics are caught ([`catch_panic`], and always inside [`spawn`]) and
//!   raised as errors: a bug in the plugin never aborts the host process.
//! - [`consume`] runs a writer's Rust code on the batches of the stream it is handed, without the
//!   GIL ([`stream_from_py`] / [`BatchStream`] to import one yourself).
//! - [`schema_from_py`] imports a `pyarrow.Schema` (the schema the engine planned);
//!   [`options_schema`] publishes the JSON Schema of an options struct (serde + schemars: declared
//!   once, in Rust, checked by the host), and [`options_from_py`] turns the job's options (a dict
//!   or JSON) into that struct.
//!
//! ## A complete reader
//!
//! The Rust side (`src/lib.rs` of a maturin project, `crate-type = ["cdylib"]`):
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use arrow_array::{Int64Array, RecordBatch};
//! use dativo_plugin::{options_from_py, schema_from_py, spawn, ArrowStream, Error};
//! use pyo3::prelude::*;
//!
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Options {
//!     rows: i64,
//! }
//!
//! /// Count from 0 to `rows`, in batches of 64k rows, as column `n` of `schema`.
//! #[pyfunction]
//! fn count(py: Python<'_>, schema: &Bound<'_, PyAny>, options: &Bound<'_, PyAny>) -> PyResult<ArrowStream> {
//!     let schema = schema_from_py(schema)?;
//!     let options: Options = options_from_py(options)?;
//!     spawn(py, schema.clone(), move |sink| {
//!         for start in (0..options.rows).step_by(65_536) {
//!             let n = Int64Array::from_iter_values(start..(start + 65_536).min(options.rows));
//!             let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(n)])
//!                 .map_err(|e| Error::read(e.to_string()))?;
//!             sink.send(batch)?; // Err(Cancelled) once the consumer is gone: `?` stops us
//!         }
//!         Ok(())
//!     })
//! }
//!
//! #[pymodule]
//! fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
//!     dativo_plugin::register(m)?;
//!     m.add_function(wrap_pyfunction!(count, m)?)
//! }
//! ```
//!
//! The Python side (`python/counter/__init__.py`), registered as an entry point in `dativo.readers`:
//!
//! ```python
//! import pyarrow as pa
//! from pydantic import BaseModel
//! from dativo.api import Reader, Split
//! from counter import _native
//!
//! class CountReader(Reader):
//!     class Config(BaseModel):
//!         rows: int = 1_000_000
//!     schema = pa.schema([pa.field("n", pa.int64(), nullable=False)])
//!     language = "rust"
//!
//!     def read(self, split: Split):
//!         return _native.count(self.schema, self.config.model_dump())
//! ```
//!
//! See `sdk/rust/README.md` and `docs/plugins/rust.md` for the build (maturin) and the job file,
//! and `examples/plugins/rust_postgres` for a real reader (binary `COPY` into Arrow).
//!
//! ## Errors: which path they take
//!
//! An error the producer returns before its first batch is raised by [`spawn`] itself, as its own
//! Python exception. Later errors are raised by `next()` when the stream is iterated from Python,
//! again as their own exception; a consumer that took the stream through `__arrow_c_stream__`
//! sees them as its generic Arrow error (pyarrow: `ArrowInvalid`) whose text is
//! `External error: <message>`.

mod error;
mod input;
mod options;
mod schema;
mod stream;

pub use arrow_array;
pub use arrow_schema;
pub use pyo3;
pub use schemars;

pub use error::{catch_panic, Error, ErrorKind, Result};
pub use input::{consume, stream_from_py, BatchStream};
pub use options::{options_from_json, options_from_py, options_schema};
pub use schema::schema_from_py;
pub use stream::{
    check_schema, from_iter, spawn, spawn_with_prefetch, ArrowBatch, ArrowStream, BatchSink, PREFETCH,
};

use pyo3::prelude::*;

/// Add this crate's Python classes ([`ArrowStream`], [`ArrowBatch`]) to the plugin's module, so
/// they have a home for `isinstance` checks and documentation. Optional.
///
/// # Errors
/// If the module refuses the attributes.
pub fn register(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<ArrowStream>()?;
    module.add_class::<ArrowBatch>()
}
