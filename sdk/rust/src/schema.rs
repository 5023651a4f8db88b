//! Arrow schemas from Python (anything with `__arrow_c_schema__`: pyarrow, polars, nanoarrow …).

use std::sync::Arc;

use arrow_schema::ffi::FFI_ArrowSchema;
use arrow_schema::{Schema, SchemaRef};
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

use crate::error::Error;

/// Import the schema of a Python object that implements `__arrow_c_schema__` (a `pyarrow.Schema`,
/// for instance), without copying it. Field metadata (extension types such as `arrow.uuid`) is kept.
///
/// # Errors
/// A `TypeError` if the object has no `__arrow_c_schema__`; [`Error::schema`] if the exported
/// schema is not a struct of fields.
pub fn schema_from_py(obj: &Bound<'_, PyAny>) -> PyResult<SchemaRef> {
    let capsule = obj.call_method0("__arrow_c_schema__").map_err(|_| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "expected an Arrow schema (an object with __arrow_c_schema__), got {}",
            obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })?;
    let capsule = capsule.cast::<PyCapsule>()?;
    let pointer = capsule.pointer_checked(Some(c"arrow_schema"))?;
    // SAFETY: a capsule named "arrow_schema" holds an FFI_ArrowSchema (Arrow PyCapsule interface);
    // it stays owned (and released) by the capsule, which outlives this borrow.
    let ffi = unsafe { &*(pointer.as_ptr() as *const FFI_ArrowSchema) };
    let schema =
        Schema::try_from(ffi).map_err(|e| Error::schema(format!("cannot import the schema: {e}")))?;
    Ok(Arc::new(schema))
}
