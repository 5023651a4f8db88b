//! Batches produced on a background thread, handed to Python as an Arrow C stream.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use arrow_array::ffi::FFI_ArrowArray;
use arrow_array::ffi_stream::FFI_ArrowArrayStream;
use arrow_array::{Array, RecordBatch, RecordBatchReader, StructArray};
use arrow_schema::ffi::FFI_ArrowSchema;
use arrow_schema::{ArrowError, Schema, SchemaRef};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::error::{Error, ErrorKind, Result};

/// Batches a producer may run ahead of the consumer: decoding overlaps the consumer's work while
/// memory stays bounded (about `PREFETCH + 2` batches: queued, being built, being consumed).
pub const PREFETCH: usize = 2;

type Message = Result<RecordBatch>;

/// Where a producer puts its batches; handed to the closure given to [`spawn`].
pub struct BatchSink {
    schema: SchemaRef,
    tx: SyncSender<Message>,
}

impl BatchSink {
    /// The schema every batch must have.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Hand one batch to the consumer, waiting while [`PREFETCH`] batches are already queued.
    ///
    /// # Errors
    /// [`ErrorKind::Schema`] if the batch's schema differs from the stream's (naming the column);
    /// [`ErrorKind::Cancelled`] once the consumer has closed the stream: return it (with `?`) to
    /// stop producing.
    pub fn send(&mut self, batch: RecordBatch) -> Result<()> {
        check_schema(&self.schema, &batch)?;
        self.tx.send(Ok(batch)).map_err(|_| Error::cancelled())
    }
}

/// Check that `batch` has exactly `expected` (names, types, nullability, field metadata).
///
/// # Errors
/// [`ErrorKind::Schema`], naming the first column that differs.
pub fn check_schema(expected: &SchemaRef, batch: &RecordBatch) -> Result<()> {
    let actual = batch.schema_ref();
    if Arc::ptr_eq(expected, actual) || expected.fields() == actual.fields() {
        return Ok(());
    }
    if expected.fields().len() != actual.fields().len() {
        return Err(Error::schema(format!(
            "the plugin produced a batch with {} columns; the declared schema has {}",
            actual.fields().len(),
            expected.fields().len()
        )));
    }
    let (want, got) = expected
        .fields()
        .iter()
        .zip(actual.fields().iter())
        .find(|(want, got)| want != got)
        .expect("fields differ somewhere");
    Err(Error::schema(format!(
        "column {} was produced as {} (nullable: {}), but the declared schema says {} (nullable: {})",
        want.name(),
        got.data_type(),
        got.is_nullable(),
        want.data_type(),
        want.is_nullable()
    )))
}

/// Run `produce` on a new thread and return its batches to Python as an [`ArrowStream`].
///
/// The producer runs without the GIL and may be up to [`PREFETCH`] batches ahead of the consumer.
/// This call waits (without the GIL) for the first batch, so an error met before it (cannot
/// connect, bad query, bad options) is raised here, as its own Python exception; later errors are
/// raised by the stream. A panic in `produce` becomes an [`ErrorKind::Panic`] error. When the
/// consumer closes or drops the stream, the next [`BatchSink::send`] fails with
/// [`ErrorKind::Cancelled`], so the producer stops and frees its resources.
///
/// ```no_run
/// # use dativo_plugin::{spawn, ArrowStream, Result};
/// # use arrow_array::{Int64Array, RecordBatch};
/// # use arrow_schema::{DataType, Field, Schema};
/// # use pyo3::prelude::*;
/// # use std::sync::Arc;
/// #[pyfunction]
/// fn numbers(py: Python<'_>, n: i64) -> PyResult<ArrowStream> {
///     let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
///     spawn(py, schema.clone(), move |sink| {
///         for start in (0..n).step_by(65_536) {
///             let values = Int64Array::from_iter_values(start..(start + 65_536).min(n));
///             let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(values)])
///                 .map_err(|e| dativo_plugin::Error::read(e.to_string()))?;
///             sink.send(batch)?;
///         }
///         Ok(())
///     })
/// }
/// ```
///
/// # Errors
/// The producer's error if it fails before its first batch, or if the thread cannot be started.
pub fn spawn<F>(py: Python<'_>, schema: SchemaRef, produce: F) -> PyResult<ArrowStream>
where
    F: FnOnce(&mut BatchSink) -> Result<()> + Send + 'static,
{
    spawn_with_prefetch(py, schema, PREFETCH, produce)
}

/// [`spawn`] with another read-ahead than [`PREFETCH`] (`0`: produce only while the consumer waits).
///
/// # Errors
/// As [`spawn`].
pub fn spawn_with_prefetch<F>(
    py: Python<'_>,
    schema: SchemaRef,
    prefetch: usize,
    produce: F,
) -> PyResult<ArrowStream>
where
    F: FnOnce(&mut BatchSink) -> Result<()> + Send + 'static,
{
    let (tx, rx) = sync_channel(prefetch);
    let mut sink = BatchSink {
        schema: schema.clone(),
        tx,
    };
    thread::Builder::new()
        .name("dativo-producer".into())
        .spawn(move || {
            let error = match catch_unwind(AssertUnwindSafe(|| produce(&mut sink))) {
                Ok(Ok(())) => return,
                Ok(Err(error)) => error,
                Err(payload) => Error::from_panic(payload),
            };
            if error.kind() != ErrorKind::Cancelled {
                let _ = sink.tx.send(Err(error)); // the consumer may be gone: nobody to tell
            }
        })
        .map_err(|e| Error::read(format!("cannot start the producer thread: {e}")))?;
    let channel = Channel { pending: None, rx };
    let (channel, first) = py.detach(move || {
        let mut channel = channel;
        let first = channel.next();
        (channel, first)
    });
    let mut channel = channel;
    match first {
        Some(Err(error)) => Err(error.into()),
        Some(Ok(batch)) => {
            channel.pending = Some(batch);
            Ok(ArrowStream::new(schema, channel))
        }
        None => Ok(ArrowStream::new(schema, channel)),
    }
}

/// [`spawn`] for a producer that is an iterator of batches (created here, consumed on the thread).
///
/// # Errors
/// As [`spawn`].
pub fn from_iter<I, E>(py: Python<'_>, schema: SchemaRef, batches: I) -> PyResult<ArrowStream>
where
    I: IntoIterator<Item = std::result::Result<RecordBatch, E>> + Send + 'static,
    E: Into<Error>,
{
    spawn(py, schema, move |sink| {
        for batch in batches {
            sink.send(batch.map_err(Into::into)?)?;
        }
        Ok(())
    })
}

/// The consumer's end: a batch received early by [`spawn`], then the channel.
struct Channel {
    pending: Option<RecordBatch>,
    rx: Receiver<Message>,
}

impl Channel {
    /// The next batch or error; `None` at the end (the producer returned and its sender is gone).
    fn next(&mut self) -> Option<Message> {
        if let Some(batch) = self.pending.take() {
            return Some(Ok(batch));
        }
        self.rx.recv().ok()
    }
}

enum State {
    Ready(Channel),
    /// A `__next__` is waiting for a batch (without the GIL) and holds the channel.
    Busy,
    Closed,
}

/// A stream of record batches for Python, made by [`spawn`] or [`from_iter`].
///
/// It implements the Arrow PyCapsule interface: `__arrow_c_stream__` (hand the whole stream to
/// pyarrow, polars, DuckDB … zero copy: `pyarrow.RecordBatchReader.from_stream(s)`) and
/// `__arrow_c_schema__`. It is also a Python iterator of [`ArrowBatch`] (`pyarrow.record_batch(b)`
/// imports one without copying); iterating raises the producer's errors as their own Python
/// exceptions, whereas through the C stream they arrive as the consumer's generic Arrow error with
/// the message. `close()` (or leaving a `with` block) stops the producer.
#[pyclass(module = "dativo_plugin", frozen)]
pub struct ArrowStream {
    schema: SchemaRef,
    state: Mutex<State>,
}

impl ArrowStream {
    fn new(schema: SchemaRef, channel: Channel) -> Self {
        Self {
            schema,
            state: Mutex::new(State::Ready(channel)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-changed: recover it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The schema of every batch.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

#[pymethods]
impl ArrowStream {
    /// Export the schema (Arrow PyCapsule interface).
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        schema_capsule(py, &self.schema)
    }

    /// Export the stream (Arrow PyCapsule interface). It can be exported once; the consumer then
    /// owns it. `requested_schema` is ignored: the batches have the declared schema.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_stream__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let _ = requested_schema;
        let channel = match std::mem::replace(&mut *self.lock(), State::Closed) {
            State::Ready(channel) => channel,
            State::Busy => {
                return Err(PyRuntimeError::new_err(
                    "the stream is being iterated and cannot be exported",
                ))
            }
            State::Closed => {
                return Err(PyRuntimeError::new_err(
                    "the stream was already exported, consumed or closed",
                ))
            }
        };
        let reader = ChannelReader {
            schema: self.schema.clone(),
            channel,
        };
        let stream = FFI_ArrowArrayStream::new(Box::new(reader));
        PyCapsule::new_with_value(py, stream, c"arrow_array_stream")
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next batch; waits without the GIL. Raises the producer's error, if it failed.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<ArrowBatch>> {
        let channel = match std::mem::replace(&mut *self.lock(), State::Busy) {
            State::Ready(channel) => channel,
            State::Busy => {
                return Err(PyRuntimeError::new_err(
                    "the stream is already being iterated by another thread",
                ))
            }
            State::Closed => {
                *self.lock() = State::Closed;
                return Ok(None);
            }
        };
        let (channel, message) = py.detach(move || {
            let mut channel = channel;
            let message = channel.next();
            (channel, message)
        });
        let mut state = self.lock();
        match message {
            Some(Ok(batch)) => {
                if matches!(*state, State::Busy) {
                    *state = State::Ready(channel); // unless close() was called meanwhile
                }
                Ok(Some(ArrowBatch { batch }))
            }
            Some(Err(error)) => {
                *state = State::Closed;
                drop(state);
                Err(error.to_pyerr(py))
            }
            None => {
                *state = State::Closed;
                Ok(None)
            }
        }
    }

    /// Stop the producer (at its next batch) and release the stream. Safe to call more than once.
    fn close(&self) {
        let previous = std::mem::replace(&mut *self.lock(), State::Closed);
        drop(previous); // dropping the receiver makes the producer's next send fail
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) {
        self.close();
    }
}

/// What the C stream reads from: the channel, with errors as `ArrowError::ExternalError`.
struct ChannelReader {
    schema: SchemaRef,
    channel: Channel,
}

impl Iterator for ChannelReader {
    type Item = std::result::Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.channel
            .next()
            .map(|message| message.map_err(|error| ArrowError::ExternalError(Box::new(error))))
    }
}

impl RecordBatchReader for ChannelReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }
}

/// One record batch for Python (Arrow PyCapsule interface: `pyarrow.record_batch(b)`, zero copy).
#[pyclass(module = "dativo_plugin", frozen)]
pub struct ArrowBatch {
    batch: RecordBatch,
}

impl ArrowBatch {
    /// Wrap a batch.
    pub fn new(batch: RecordBatch) -> Self {
        Self { batch }
    }

    /// The batch.
    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }
}

#[pymethods]
impl ArrowBatch {
    /// Rows in the batch.
    #[getter]
    fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    fn __len__(&self) -> usize {
        self.batch.num_rows()
    }

    /// Export the schema (Arrow PyCapsule interface).
    fn __arrow_c_schema__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        schema_capsule(py, self.batch.schema_ref())
    }

    /// Export the batch as a struct array (Arrow PyCapsule interface); `requested_schema` is ignored.
    #[pyo3(signature = (requested_schema = None))]
    fn __arrow_c_array__<'py>(
        &self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyCapsule>, Bound<'py, PyCapsule>)> {
        let _ = requested_schema;
        let schema = schema_capsule(py, self.batch.schema_ref())?;
        let data = StructArray::from(self.batch.clone()).into_data();
        let array = PyCapsule::new_with_value(py, FFI_ArrowArray::new(&data), c"arrow_array")?;
        Ok((schema, array))
    }
}

fn schema_capsule<'py>(py: Python<'py>, schema: &Schema) -> PyResult<Bound<'py, PyCapsule>> {
    let ffi = FFI_ArrowSchema::try_from(schema)
        .map_err(|e| Error::schema(format!("cannot export the schema: {e}")))?;
    PyCapsule::new_with_value(py, ffi, c"arrow_schema")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int32Array;
    use arrow_schema::{DataType, Field};

    fn schema(nullable: bool) -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, nullable)]))
    }

    #[test]
    fn schema_check_names_the_column() {
        let batch = RecordBatch::try_new(schema(true), vec![Arc::new(Int32Array::from(vec![1]))]).unwrap();
        assert!(check_schema(&schema(true), &batch).is_ok());
        let error = check_schema(&schema(false), &batch).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Schema);
        assert!(error.message().starts_with("column x "), "{error}");
    }

    #[test]
    fn channel_delivers_pending_batch_then_the_rest() {
        let (tx, rx) = sync_channel(PREFETCH);
        let make =
            |v: i32| RecordBatch::try_new(schema(false), vec![Arc::new(Int32Array::from(vec![v]))]).unwrap();
        tx.send(Ok(make(2))).unwrap();
        tx.send(Err(Error::read("late failure"))).unwrap();
        drop(tx);
        let mut reader = ChannelReader {
            schema: schema(false),
            channel: Channel {
                pending: Some(make(1)),
                rx,
            },
        };
        assert_eq!(reader.next().unwrap().unwrap().num_rows(), 1);
        assert_eq!(reader.next().unwrap().unwrap().num_rows(), 1);
        let error = reader.next().unwrap().unwrap_err();
        assert_eq!(error.to_string(), "External error: late failure");
        assert!(reader.next().is_none());
    }
}
