//! Arrow streams from Python into Rust: the batches a writer is handed.
//!
//! The engine gives a writer's `write(split, stream)` a `pyarrow.RecordBatchReader`; any object with
//! `__arrow_c_stream__` will do. [`consume`] imports it without copying and runs the writer's Rust
//! code on it **without the GIL**, so encoding overlaps the engine's reading.

use arrow_array::ffi_stream::{FFI_ArrowArrayStream, RecordBatchStreamReader};
use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_schema::SchemaRef;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::error::{catch_panic, Error, Result};

/// The batches of an imported Arrow C stream, in order; an iterator of `Result<RecordBatch>`.
///
/// A failure of the stream's producer (the reader upstream, the engine's checks) arrives as an
/// [`crate::ErrorKind::Read`] error with the producer's message: return it with `?`, and the engine
/// blames the reader, not the writer.
pub struct BatchStream {
    reader: RecordBatchStreamReader,
}

impl BatchStream {
    /// Take ownership of an exported C stream.
    ///
    /// # Errors
    /// [`Error::schema`] if the stream is released or its schema cannot be imported.
    pub fn from_ffi(stream: FFI_ArrowArrayStream) -> Result<Self> {
        let reader = RecordBatchStreamReader::try_new(stream)
            .map_err(|e| Error::schema(format!("cannot import the input stream: {e}")))?;
        Ok(Self { reader })
    }

    /// The schema every batch has.
    pub fn schema(&self) -> SchemaRef {
        self.reader.schema()
    }
}

impl Iterator for BatchStream {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.reader
            .next()
            .map(|batch| batch.map_err(|e| Error::read(format!("the input stream failed: {e}"))))
    }
}

/// Import a Python object with `__arrow_c_stream__` (a `pyarrow.RecordBatchReader`, a table…).
///
/// The stream is moved out of its capsule: this [`BatchStream`] owns it and releases it when
/// dropped. Iterate it without the GIL ([`consume`] does): a Python producer takes the GIL for
/// each batch it makes.
///
/// # Errors
/// A `TypeError` if the object has no `__arrow_c_stream__`; [`Error::schema`] if its schema cannot
/// be imported.
pub fn stream_from_py(obj: &Bound<'_, PyAny>) -> PyResult<BatchStream> {
    let capsule = obj.call_method0("__arrow_c_stream__").map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "expected an Arrow stream (an object with __arrow_c_stream__), got {}",
            obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })?;
    let capsule = capsule.cast::<PyCapsule>()?;
    let pointer = capsule.pointer_checked(Some(c"arrow_array_stream"))?;
    // SAFETY: a capsule named "arrow_array_stream" holds an FFI_ArrowArrayStream (Arrow PyCapsule
    // interface). `from_raw` moves it out and leaves a released stream behind, which the capsule's
    // destructor then skips, so the stream is released exactly once, by us.
    let stream = unsafe { FFI_ArrowArrayStream::from_raw(pointer.as_ptr() as *mut FFI_ArrowArrayStream) };
    Ok(BatchStream::from_ffi(stream)?)
}

/// Run `write` on the batches of `stream` (anything with `__arrow_c_stream__`) without the GIL,
/// and return what it returns.
///
/// A panic in `write` becomes an [`crate::ErrorKind::Panic`] error; every error is raised as its
/// Python exception ([`Error::write`] as the writer's `PluginFailed`).
///
/// ```no_run
/// use dativo_plugin::{consume, Error};
/// use pyo3::prelude::*;
///
/// /// Rows of the stream (a writer would write them somewhere).
/// #[pyfunction]
/// fn count(py: Python<'_>, stream: &Bound<'_, PyAny>) -> PyResult<usize> {
///     consume(py, stream, |batches| {
///         let mut rows = 0;
///         for batch in batches {
///             rows += batch?.num_rows();
///         }
///         Ok(rows)
///     })
/// }
/// ```
///
/// # Errors
/// As [`stream_from_py`], and whatever `write` returns.
pub fn consume<T, F>(py: Python<'_>, stream: &Bound<'_, PyAny>, write: F) -> PyResult<T>
where
    F: FnOnce(&mut BatchStream) -> Result<T> + Send,
    T: Send,
{
    let mut batches = stream_from_py(stream)?;
    py.detach(move || catch_panic(move || write(&mut batches)))
        .map_err(|error| error.to_pyerr(py))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatchIterator};
    use arrow_schema::{ArrowError, DataType, Field, Schema};

    use super::*;

    fn exported(batches: Vec<std::result::Result<RecordBatch, ArrowError>>, schema: SchemaRef) -> BatchStream {
        let reader = RecordBatchIterator::new(batches, schema);
        BatchStream::from_ffi(FFI_ArrowArrayStream::new(Box::new(reader))).unwrap()
    }

    #[test]
    fn batches_arrive_in_order_and_a_producer_error_is_a_read_error() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = |values: Vec<i64>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap()
        };
        let mut stream = exported(
            vec![Ok(batch(vec![1, 2])), Ok(batch(vec![3])), Err(ArrowError::ComputeError("boom".into()))],
            schema.clone(),
        );
        assert_eq!(stream.schema(), schema);
        assert_eq!(stream.next().unwrap().unwrap().num_rows(), 2);
        assert_eq!(stream.next().unwrap().unwrap().num_rows(), 1);
        let error = stream.next().unwrap().unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::Read);
        assert!(error.message().contains("boom"), "{error}");
    }

    #[test]
    fn a_released_stream_is_refused() {
        let error = BatchStream::from_ffi(FFI_ArrowArrayStream::empty()).err().unwrap();
        assert_eq!(error.kind(), crate::ErrorKind::Schema);
    }
}
