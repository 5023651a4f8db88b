//! `rust_postgres._native`: one split of a PostgreSQL table, binary `COPY` decoded into Arrow.
//!
//! The Python class `rust_postgres.RustPostgresReader` plans the splits (it subclasses Dativo's
//! Postgres reader base) and calls `copy_stream` for each one. Here a background thread connects,
//! adopts the run's snapshot, runs `COPY (<select>) TO STDOUT (FORMAT binary)` and decodes the rows
//! straight into Arrow buffers (see `decode`), handing over a batch every 64k rows (or `batch_bytes`
//! of COPY data), at most two batches ahead of the consumer. The GIL is never held while connecting or
//! decoding.

mod copy;
mod decode;

use dativo_plugin::arrow_array::RecordBatch;
use dativo_plugin::arrow_schema::SchemaRef;
use dativo_plugin::{catch_panic, options_from_py, schema_from_py, spawn, ArrowStream, BatchSink, Error};
use postgres::{Client, Config, NoTls};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use serde::Deserialize;

use crate::copy::{CopyError, CopyReader};
use crate::decode::ColumnDecoder;

create_exception!(
    rust_postgres._native,
    PostgresError,
    PyException,
    "An error reported by PostgreSQL, or by the connection to it, while reading."
);
create_exception!(
    rust_postgres._native,
    ConnectError,
    PostgresError,
    "The connection to PostgreSQL could not be opened."
);

/// Options of one read (from the Python side, as a dict).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadOptions {
    /// Dataset name, for messages.
    dataset: String,
    /// Rows per batch at most.
    #[serde(default = "default_batch_rows")]
    batch_rows: usize,
    /// COPY bytes per batch at most (about the size of the batch in Arrow).
    #[serde(default = "default_batch_bytes")]
    batch_bytes: u64,
}

fn default_batch_rows() -> usize {
    65_536
}

fn default_batch_bytes() -> u64 {
    16 * 1024 * 1024
}

/// Stream the rows of `query` in `schema`, inside a transaction opened by `setup`.
///
/// Args:
///     conninfo: key=value connection string (no TLS; see the Python side for what it may contain).
///     setup: statements run first, in order (`BEGIN …`, `SET TRANSACTION SNAPSHOT …`, settings).
///     query: the split's SELECT; its columns must arrive in the binary formats `schema` implies.
///     schema: the Arrow schema of every batch (a `pyarrow.Schema`).
///     options: `{"dataset": name, "batch_rows": int, "batch_bytes": int}`.
///
/// Returns an `ArrowStream` (iterate it, or hand it to pyarrow through `__arrow_c_stream__`).
///
/// Raises `ConnectError` if the connection fails, `PostgresError` for an error of the server (before
/// the first batch or while iterating), `dativo.errors.PluginFailed` for a value that does not fit its
/// Arrow type (naming the column) and `dativo.errors.SchemaMismatch` for an unsupported column type.
#[pyfunction]
fn copy_stream(
    py: Python<'_>,
    conninfo: &str,
    setup: Vec<String>,
    query: &str,
    schema: &Bound<'_, PyAny>,
    options: &Bound<'_, PyAny>,
) -> PyResult<ArrowStream> {
    let schema = schema_from_py(schema)?;
    let options: ReadOptions = options_from_py(options)?;
    let columns = decoders(&schema, &options)?;
    let config = parse_conninfo(conninfo)?;
    let copy = format!("COPY ({query}) TO STDOUT (FORMAT binary)");
    spawn(py, schema.clone(), move |sink| {
        read(&config, &setup, &copy, columns, &options, sink)
    })
}

/// Connect, run `SELECT 1` and disconnect (without the GIL).
///
/// Raises `ConnectError` with the server's or the network's message.
#[pyfunction]
fn ping(py: Python<'_>, conninfo: &str) -> PyResult<()> {
    let config = parse_conninfo(conninfo)?;
    py.detach(move || {
        catch_panic(|| {
            let mut client = config.connect(NoTls).map_err(connect_error)?;
            client.simple_query("SELECT 1").map_err(connect_error)?;
            Ok(())
        })
    })?;
    Ok(())
}

/// Names of the fields of `schema` whose Arrow type this reader cannot produce.
#[pyfunction]
fn unsupported_columns(schema: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    let schema = schema_from_py(schema)?;
    Ok(schema
        .fields()
        .iter()
        .filter(|field| !decode::supported(field))
        .map(|field| field.name().clone())
        .collect())
}

fn parse_conninfo(conninfo: &str) -> Result<Config, Error> {
    conninfo
        .parse()
        .map_err(|e: postgres::Error| Error::python::<ConnectError>(describe(&e)))
}

fn decoders(schema: &SchemaRef, options: &ReadOptions) -> Result<Vec<ColumnDecoder>, Error> {
    // Every COPY field costs at least its 4-byte length, which bounds the rows `batch_bytes` can hold.
    let fit = options.batch_bytes as usize / (4 * schema.fields().len().max(1)) + 1;
    let rows = options.batch_rows.min(fit).clamp(1, 1 << 20);
    schema
        .fields()
        .iter()
        .map(|field| {
            ColumnDecoder::new(field.clone(), rows).ok_or_else(|| {
                Error::schema(format!(
                    "Column {} of {} has Arrow type {}, which rust_postgres cannot produce",
                    field.name(),
                    options.dataset,
                    field.data_type()
                ))
            })
        })
        .collect()
}

/// The producer: runs on the stream's thread.
fn read(
    config: &Config,
    setup: &[String],
    copy: &str,
    columns: Vec<ColumnDecoder>,
    options: &ReadOptions,
    sink: &mut BatchSink,
) -> Result<(), Error> {
    let mut client: Client = config.connect(NoTls).map_err(connect_error)?;
    let cancel = client.cancel_token();
    let result = copy_rows(&mut client, setup, copy, columns, options, sink);
    if result.is_err() {
        // Dropping the client mid-COPY would first drain the rest of the table (the server sends it all
        // before it reads our Terminate): have the server stop the statement instead.
        let _ = cancel.cancel_query(NoTls);
    }
    result
}

fn copy_rows(
    client: &mut Client,
    setup: &[String],
    copy: &str,
    mut columns: Vec<ColumnDecoder>,
    options: &ReadOptions,
    sink: &mut BatchSink,
) -> Result<(), Error> {
    for statement in setup {
        client.batch_execute(statement).map_err(server_error)?;
    }
    let mut reader = CopyReader::new(client.copy_out(copy).map_err(server_error)?);
    reader.header().map_err(copy_error)?;
    let dataset = options.dataset.as_str();
    let batch_rows = options.batch_rows.max(1);
    let (mut rows, mut start) = (0usize, reader.consumed());
    while let Some(row) = reader.row().map_err(copy_error)? {
        if row.len() != columns.len() {
            return Err(Error::read(format!(
                "Reading {dataset} failed: COPY returned a row of {} columns, expected {}",
                row.len(),
                columns.len()
            )));
        }
        for (column, value) in columns.iter_mut().zip(row.fields()) {
            match value {
                Some(value) => column.append(value, dataset)?,
                None => column.append_null(dataset)?,
            }
        }
        rows += 1;
        if rows >= batch_rows || reader.consumed() - start >= options.batch_bytes {
            sink.send(finish(sink.schema(), &mut columns, dataset)?)?;
            (rows, start) = (0, reader.consumed());
        }
    }
    if rows > 0 {
        sink.send(finish(sink.schema(), &mut columns, dataset)?)?;
    }
    Ok(())
}

fn finish(schema: &SchemaRef, columns: &mut [ColumnDecoder], dataset: &str) -> Result<RecordBatch, Error> {
    let arrays = columns
        .iter_mut()
        .map(|column| column.finish(dataset))
        .collect::<Result<Vec<_>, Error>>()?;
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| Error::schema(e.to_string()))
}

/// The server's words: `SEVERITY: message` with its detail and hint; or the client's error and its causes.
fn describe(error: &postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        return chain(error);
    };
    let mut text = format!("{}: {}", db.severity(), db.message());
    if let Some(detail) = db.detail() {
        text.push_str(&format!(" DETAIL: {detail}"));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!(" HINT: {hint}"));
    }
    text
}

/// An error and its sources, `outer: inner: innermost` (the driver keeps the cause out of `Display`).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn connect_error(error: postgres::Error) -> Error {
    Error::python::<ConnectError>(describe(&error))
}

fn server_error(error: postgres::Error) -> Error {
    Error::python::<PostgresError>(describe(&error))
}

fn copy_error(error: CopyError) -> Error {
    match error {
        // The connection wraps the server's error (e.g. a value guard firing) in an io::Error.
        CopyError::Io(io) => match io.get_ref().and_then(|e| e.downcast_ref::<postgres::Error>()) {
            Some(error) => Error::python::<PostgresError>(describe(error)),
            None => Error::python::<PostgresError>(chain(&io)),
        },
        CopyError::Format(message) => Error::python::<PostgresError>(message),
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    dativo_plugin::register(m)?;
    m.add("PostgresError", m.py().get_type::<PostgresError>())?;
    m.add("ConnectError", m.py().get_type::<ConnectError>())?;
    m.add_function(wrap_pyfunction!(copy_stream, m)?)?;
    m.add_function(wrap_pyfunction!(ping, m)?)?;
    m.add_function(wrap_pyfunction!(unsupported_columns, m)?)?;
    Ok(())
}
