//! PostgreSQL binary values straight into Arrow buffers, one decoder per output column.
//!
//! The decoder is chosen by the column's Arrow type in the planned schema; the SELECT of the split
//! has already cast every column whose PostgreSQL type has no direct Arrow counterpart to `text`,
//! `int8` or `float8` (see `dativo.readers.postgres.catalog`), so each Arrow type has exactly one
//! PostgreSQL binary format behind it.
//!
//! Values go into plain vectors sized for a whole batch (fixed-width values are one big-endian load
//! and one push; text is appended to one byte buffer and checked as UTF-8 once per batch), a validity
//! bitmap exists only once a column has held a NULL, and each finished vector becomes its Arrow
//! buffer without a copy.

use std::sync::Arc;

use arrow_buffer::{BooleanBufferBuilder, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use dativo_plugin::arrow_array::types::{
    ArrowPrimitiveType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, IntervalMonthDayNano, IntervalMonthDayNanoType, Time64MicrosecondType,
    TimestampMicrosecondType,
};
use dativo_plugin::arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, FixedSizeBinaryArray, PrimitiveArray, StringArray,
};
use dativo_plugin::arrow_schema::{DataType, Field, IntervalUnit, TimeUnit};
use dativo_plugin::Error;

/// Days from 1970-01-01 (Arrow's epoch) to 2000-01-01 (PostgreSQL's).
const DAYS_2000: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const MICROS_2000: i64 = 946_684_800_000_000;
const UUID_EXTENSION: &str = "arrow.uuid";

/// Whether this reader can produce a field of this Arrow type.
pub fn supported(field: &Field) -> bool {
    Kind::of(field).is_some()
}

#[derive(Clone, Copy)]
enum Kind {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Decimal { precision: u8, scale: i8 },
    Utf8,
    Binary,
    Date32,
    Time64,
    Timestamp,
    Interval,
    Uuid,
}

impl Kind {
    fn of(field: &Field) -> Option<Kind> {
        Some(match field.data_type() {
            DataType::Boolean => Kind::Bool,
            DataType::Int16 => Kind::Int16,
            DataType::Int32 => Kind::Int32,
            DataType::Int64 => Kind::Int64,
            DataType::Float32 => Kind::Float32,
            DataType::Float64 => Kind::Float64,
            DataType::Decimal128(precision, scale) if *scale >= 0 => Kind::Decimal {
                precision: *precision,
                scale: *scale,
            },
            DataType::Utf8 => Kind::Utf8,
            DataType::Binary => Kind::Binary,
            DataType::Date32 => Kind::Date32,
            DataType::Time64(TimeUnit::Microsecond) => Kind::Time64,
            DataType::Timestamp(TimeUnit::Microsecond, tz) if tz.as_deref().is_none_or(|tz| tz == "UTC") => {
                Kind::Timestamp
            }
            DataType::Interval(IntervalUnit::MonthDayNano) => Kind::Interval,
            DataType::FixedSizeBinary(16)
                if field.metadata().get("ARROW:extension:name").map(String::as_str)
                    == Some(UUID_EXTENSION) =>
            {
                Kind::Uuid
            }
            _ => return None,
        })
    }
}

/// A column's values of the batch being built, in the layout of its Arrow buffers.
enum Values {
    Bool(BooleanBufferBuilder),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Float32(Vec<f32>),
    Float64(Vec<f64>),
    Decimal(Vec<i128>),
    /// Utf8 and Binary: `offsets` has one more entry than there are values.
    Bytes {
        offsets: Vec<i32>,
        data: Vec<u8>,
    },
    Date32(Vec<i32>),
    Time64(Vec<i64>),
    Timestamp(Vec<i64>),
    Interval(Vec<IntervalMonthDayNano>),
    Uuid(Vec<u8>),
}

impl Values {
    fn new(kind: Kind, rows: usize, bytes: usize) -> Self {
        match kind {
            Kind::Bool => Values::Bool(BooleanBufferBuilder::new(rows)),
            Kind::Int16 => Values::Int16(Vec::with_capacity(rows)),
            Kind::Int32 => Values::Int32(Vec::with_capacity(rows)),
            Kind::Int64 => Values::Int64(Vec::with_capacity(rows)),
            Kind::Float32 => Values::Float32(Vec::with_capacity(rows)),
            Kind::Float64 => Values::Float64(Vec::with_capacity(rows)),
            Kind::Decimal { .. } => Values::Decimal(Vec::with_capacity(rows)),
            Kind::Utf8 | Kind::Binary => {
                let mut offsets = Vec::with_capacity(rows + 1);
                offsets.push(0);
                Values::Bytes {
                    offsets,
                    data: Vec::with_capacity(bytes),
                }
            }
            Kind::Date32 => Values::Date32(Vec::with_capacity(rows)),
            Kind::Time64 => Values::Time64(Vec::with_capacity(rows)),
            Kind::Timestamp => Values::Timestamp(Vec::with_capacity(rows)),
            Kind::Interval => Values::Interval(Vec::with_capacity(rows)),
            Kind::Uuid => Values::Uuid(Vec::with_capacity(rows * 16)),
        }
    }

    /// A placeholder under a NULL (Arrow requires a slot; its content is never read).
    fn push_default(&mut self) {
        match self {
            Values::Bool(b) => b.append(false),
            Values::Int16(v) => v.push(0),
            Values::Int32(v) | Values::Date32(v) => v.push(0),
            Values::Int64(v) | Values::Time64(v) | Values::Timestamp(v) => v.push(0),
            Values::Float32(v) => v.push(0.0),
            Values::Float64(v) => v.push(0.0),
            Values::Decimal(v) => v.push(0),
            Values::Bytes { offsets, data } => offsets.push(data.len() as i32),
            Values::Interval(v) => v.push(IntervalMonthDayNano::new(0, 0, 0)),
            Values::Uuid(v) => v.extend_from_slice(&[0; 16]),
        }
    }
}

/// Why one value could not be decoded (the column decoder adds which column and dataset).
enum Problem {
    /// The value does not fit the Arrow type (NaN in a decimal, too many digits, out of range).
    DoesNotFit(String),
    /// The bytes are not what this Arrow type's PostgreSQL format looks like.
    Malformed(String),
}

type Decoded = Result<(), Problem>;

/// Decodes one column's values and builds its Arrow array, batch by batch.
pub struct ColumnDecoder {
    field: Arc<Field>,
    kind: Kind,
    values: Values,
    /// Validity of the values so far; `None` while every value is valid.
    nulls: Option<BooleanBufferBuilder>,
    len: usize,
    rows: usize,
}

impl ColumnDecoder {
    /// A decoder for `field`, or `None` if its type is not supported.
    pub fn new(field: Arc<Field>, rows: usize) -> Option<Self> {
        let kind = Kind::of(&field)?;
        Some(Self {
            values: Values::new(kind, rows, 0),
            field,
            kind,
            nulls: None,
            len: 0,
            rows,
        })
    }

    /// Append a NULL.
    pub fn append_null(&mut self, dataset: &str) -> Result<(), Error> {
        if !self.field.is_nullable() {
            return Err(Error::read(format!(
                "Column {} of {dataset} holds a NULL, but the column is declared NOT NULL",
                self.field.name()
            )));
        }
        let (len, rows) = (self.len, self.rows);
        let nulls = self.nulls.get_or_insert_with(|| {
            let mut nulls = BooleanBufferBuilder::new(rows.max(len + 1));
            nulls.append_n(len, true);
            nulls
        });
        nulls.append(false);
        self.values.push_default();
        self.len += 1;
        Ok(())
    }

    /// Append one value in PostgreSQL's binary format.
    #[inline]
    pub fn append(&mut self, value: &[u8], dataset: &str) -> Result<(), Error> {
        match self.append_value(value) {
            Ok(()) => {
                if let Some(nulls) = &mut self.nulls {
                    nulls.append(true);
                }
                self.len += 1;
                Ok(())
            }
            Err(problem) => Err(self.error(problem, dataset)),
        }
    }

    #[inline]
    fn append_value(&mut self, v: &[u8]) -> Decoded {
        match &mut self.values {
            Values::Bool(b) => b.append(fixed::<1>(v)?[0] != 0),
            Values::Int16(b) => b.push(i16::from_be_bytes(fixed(v)?)),
            Values::Int32(b) => b.push(i32::from_be_bytes(fixed(v)?)),
            Values::Int64(b) => b.push(i64::from_be_bytes(fixed(v)?)),
            Values::Float32(b) => b.push(f32::from_be_bytes(fixed(v)?)),
            Values::Float64(b) => b.push(f64::from_be_bytes(fixed(v)?)),
            Values::Decimal(b) => {
                let Kind::Decimal { precision, scale } = self.kind else {
                    unreachable!()
                };
                b.push(numeric(v, precision, scale)?)
            }
            Values::Bytes { offsets, data } => {
                data.extend_from_slice(v);
                let end = i32::try_from(data.len()).map_err(|_| {
                    Problem::DoesNotFit("the batch's values exceed 2 GiB; lower batch_size_bytes".into())
                })?;
                offsets.push(end)
            }
            Values::Date32(b) => {
                let days = i32::from_be_bytes(fixed(v)?);
                b.push(
                    days.checked_add(DAYS_2000)
                        .ok_or_else(|| out_of_range("date", days))?,
                )
            }
            Values::Time64(b) => b.push(i64::from_be_bytes(fixed(v)?)),
            Values::Timestamp(b) => {
                let micros = i64::from_be_bytes(fixed(v)?);
                b.push(
                    micros
                        .checked_add(MICROS_2000)
                        .ok_or_else(|| out_of_range("timestamp", micros))?,
                )
            }
            Values::Interval(b) => {
                let v: [u8; 16] = fixed(v)?;
                let micros = i64::from_be_bytes(v[0..8].try_into().expect("8 bytes"));
                let days = i32::from_be_bytes(v[8..12].try_into().expect("4 bytes"));
                let months = i32::from_be_bytes(v[12..16].try_into().expect("4 bytes"));
                let nanos = micros
                    .checked_mul(1000)
                    .ok_or_else(|| out_of_range("interval", micros))?;
                b.push(IntervalMonthDayNano::new(months, days, nanos))
            }
            Values::Uuid(b) => b.extend_from_slice(&fixed::<16>(v)?),
        }
        Ok(())
    }

    fn error(&self, problem: Problem, dataset: &str) -> Error {
        let (name, arrow) = (self.field.name(), type_name(self.field.data_type(), self.kind));
        match problem {
            Problem::DoesNotFit(detail) => {
                let error = Error::read(format!(
                    "Column {name} of {dataset} holds a value that does not fit Arrow type {arrow}: {detail}"
                ));
                if matches!(self.kind, Kind::Decimal { .. }) {
                    error.with_hint(
                        "Numeric values must fit the decimal type exactly (NaN and Infinity never fit). \
                         For numeric columns declared without precision, set the reader option numeric to \
                         a wider 'decimal(P,S)', 'string' (exact text) or 'float64' (approximate); \
                         otherwise read the column through a 'query:' with an explicit cast such as \
                         col::text.",
                    )
                } else {
                    error
                }
            }
            Problem::Malformed(detail) => Error::read(format!(
                "Column {name} of {dataset} (Arrow type {arrow}) received a value this reader cannot decode: \
                 {detail}"
            )),
        }
    }

    /// The array of the values appended since the last call; the next batch starts with fresh buffers.
    ///
    /// Raises a read error naming the column if its text is not valid UTF-8 (checked once per batch).
    pub fn finish(&mut self, dataset: &str) -> Result<ArrayRef, Error> {
        // Size the next batch's text buffer like this one's, so it is not grown value by value.
        let bytes = match &self.values {
            Values::Bytes { data, .. } => data.len(),
            _ => 0,
        };
        // Batches end at a byte size, usually long before `rows`: size the next one like this one, plus
        // a little, so that fixed-width columns do not reserve (and hold) room for rows that never come.
        let next = if self.len > 0 { self.rows.min(self.len + self.len / 16 + 16) } else { self.rows };
        let values = std::mem::replace(&mut self.values, Values::new(self.kind, next, bytes));
        let nulls = self.nulls.take().map(|mut b| NullBuffer::new(b.finish()));
        self.len = 0;
        let field = &self.field;
        let array: ArrayRef = match values {
            Values::Bool(mut b) => Arc::new(BooleanArray::new(b.finish(), nulls)),
            Values::Int16(v) => primitive::<Int16Type>(v, nulls),
            Values::Int32(v) => primitive::<Int32Type>(v, nulls),
            Values::Int64(v) => primitive::<Int64Type>(v, nulls),
            Values::Float32(v) => primitive::<Float32Type>(v, nulls),
            Values::Float64(v) => primitive::<Float64Type>(v, nulls),
            Values::Decimal(v) => {
                let Kind::Decimal { precision, scale } = self.kind else {
                    unreachable!()
                };
                let array = PrimitiveArray::<Decimal128Type>::new(ScalarBuffer::from(v), nulls)
                    .with_precision_and_scale(precision, scale)
                    .map_err(|e| Error::schema(e.to_string()))?;
                Arc::new(array)
            }
            Values::Bytes { offsets, data } => {
                let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
                let data = Buffer::from_vec(data);
                if matches!(self.kind, Kind::Utf8) {
                    let array = StringArray::try_new(offsets, data, nulls).map_err(|e| {
                        self.error(
                            Problem::Malformed(format!("the text is not valid UTF-8 ({e})")),
                            dataset,
                        )
                    })?;
                    Arc::new(array)
                } else {
                    Arc::new(BinaryArray::new(offsets, data, nulls))
                }
            }
            Values::Date32(v) => primitive::<Date32Type>(v, nulls),
            Values::Time64(v) => primitive::<Time64MicrosecondType>(v, nulls),
            Values::Timestamp(v) => {
                let tz = match field.data_type() {
                    DataType::Timestamp(_, tz) => tz.clone(),
                    _ => None,
                };
                Arc::new(
                    PrimitiveArray::<TimestampMicrosecondType>::new(ScalarBuffer::from(v), nulls)
                        .with_timezone_opt(tz),
                )
            }
            Values::Interval(v) => primitive::<IntervalMonthDayNanoType>(v, nulls),
            Values::Uuid(v) => Arc::new(
                FixedSizeBinaryArray::try_new(16, Buffer::from_vec(v), nulls)
                    .map_err(|e| Error::schema(e.to_string()))?,
            ),
        };
        Ok(array)
    }
}

/// A primitive array over `values`, which becomes its buffer without a copy.
fn primitive<T: ArrowPrimitiveType>(values: Vec<T::Native>, nulls: Option<NullBuffer>) -> ArrayRef {
    Arc::new(PrimitiveArray::<T>::new(ScalarBuffer::from(values), nulls))
}

/// The value as exactly `N` bytes, or an error saying how many came instead.
#[inline]
fn fixed<const N: usize>(value: &[u8]) -> Result<[u8; N], Problem> {
    value
        .try_into()
        .map_err(|_| Problem::Malformed(format!("expected {N} bytes, got {}", value.len())))
}

fn out_of_range(what: &str, raw: impl std::fmt::Display) -> Problem {
    Problem::DoesNotFit(format!("the {what} (raw value {raw}) is out of Arrow's range"))
}

/// The type as pyarrow prints it (the names users see in Dativo's other messages).
fn type_name(data_type: &DataType, kind: Kind) -> String {
    match (kind, data_type) {
        (Kind::Bool, _) => "bool".into(),
        (Kind::Utf8, _) => "string".into(),
        (Kind::Uuid, _) => "extension<arrow.uuid>".into(),
        (Kind::Date32, _) => "date32[day]".into(),
        (Kind::Time64, _) => "time64[us]".into(),
        (Kind::Interval, _) => "month_day_nano_interval".into(),
        (Kind::Timestamp, DataType::Timestamp(_, Some(tz))) => format!("timestamp[us, tz={tz}]"),
        (Kind::Timestamp, _) => "timestamp[us]".into(),
        (Kind::Decimal { precision, scale }, _) => format!("decimal128({precision}, {scale})"),
        _ => data_type.to_string().to_lowercase(),
    }
}

/// 10^0 … 10^38, every power a `decimal128` can hold.
const POW10: [i128; 39] = {
    let mut table = [1i128; 39];
    let mut i = 1;
    while i < 39 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
};

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// A `numeric` in binary format as the unscaled integer of `decimal128(precision, scale)`.
///
/// The format: `ndigits`, `weight`, `sign`, `dscale` (16 bits each), then `ndigits` base-10000 digits,
/// the first one worth `10000^weight`. Exact or an error: a value with a non-zero digit below the
/// scale, or too many digits for the precision, does not fit (as with Arrow's own casts).
fn numeric(v: &[u8], precision: u8, scale: i8) -> Result<i128, Problem> {
    if v.len() < 8 {
        return Err(Problem::Malformed(format!(
            "a numeric needs at least 8 bytes, got {}",
            v.len()
        )));
    }
    let ndigits = i16::from_be_bytes([v[0], v[1]]);
    let weight = i16::from_be_bytes([v[2], v[3]]) as i32;
    let sign = u16::from_be_bytes([v[4], v[5]]);
    if ndigits < 0 || v.len() != 8 + 2 * ndigits as usize {
        return Err(Problem::Malformed(format!(
            "{} bytes for a numeric of {ndigits} digits",
            v.len()
        )));
    }
    let negative = match sign {
        NUMERIC_POS => false,
        NUMERIC_NEG => true,
        NUMERIC_NAN => return Err(Problem::DoesNotFit("NaN".into())),
        NUMERIC_PINF => return Err(Problem::DoesNotFit("Infinity".into())),
        NUMERIC_NINF => return Err(Problem::DoesNotFit("-Infinity".into())),
        other => return Err(Problem::Malformed(format!("unknown numeric sign 0x{other:04x}"))),
    };
    let too_big = || Problem::DoesNotFit(format!("{} has more digits than the precision allows", text(v)));
    let too_fine = || {
        Problem::DoesNotFit(format!(
            "{} has more fractional digits than the scale ({scale}) allows",
            text(v)
        ))
    };
    let mut unscaled: i128 = 0;
    for (i, pair) in v[8..].chunks_exact(2).enumerate() {
        let digit = i16::from_be_bytes([pair[0], pair[1]]) as i32;
        if digit == 0 {
            continue;
        }
        // This digit is worth digit * 10^(4 * (weight - i)); scaled by 10^scale. Powers come from a
        // table and a digit below the scale is divided as a small integer (no 128-bit division).
        let exponent = 4 * (weight - i as i32) + scale as i32;
        let term = if exponent >= 0 {
            let power = POW10.get(exponent as usize).ok_or_else(too_big)?;
            power.checked_mul(digit as i128).ok_or_else(too_big)?
        } else {
            // A digit is below 10^4: dividing by 10^4 or more leaves a remainder.
            let divisor = *[10, 100, 1000]
                .get((-exponent - 1) as usize)
                .ok_or_else(too_fine)?;
            if digit % divisor != 0 {
                return Err(too_fine());
            }
            (digit / divisor) as i128
        };
        unscaled = unscaled.checked_add(term).ok_or_else(too_big)?;
    }
    if unscaled >= POW10[precision.min(38) as usize] {
        return Err(too_big());
    }
    Ok(if negative { -unscaled } else { unscaled })
}

/// A numeric in binary format as decimal text, for messages.
fn text(v: &[u8]) -> String {
    let weight = i16::from_be_bytes([v[2], v[3]]) as i32;
    let sign = u16::from_be_bytes([v[4], v[5]]);
    let dscale = u16::from_be_bytes([v[6], v[7]]) as i32;
    let digits: Vec<i32> = v[8..]
        .chunks_exact(2)
        .map(|p| i16::from_be_bytes([p[0], p[1]]) as i32)
        .collect();
    let mut integer = String::new();
    for i in 0..=weight.max(0) {
        let digit = if i <= weight {
            digits.get(i as usize).copied().unwrap_or(0)
        } else {
            0
        };
        if integer.is_empty() {
            if digit != 0 || i == weight.max(0) {
                integer = digit.to_string();
            }
        } else {
            integer.push_str(&format!("{digit:04}"));
        }
    }
    let mut fraction = String::new();
    let mut i = weight + 1;
    while (fraction.len() as i32) < dscale {
        let digit = if i >= 0 {
            digits.get(i as usize).copied().unwrap_or(0)
        } else {
            0
        };
        fraction.push_str(&format!("{digit:04}"));
        i += 1;
    }
    fraction.truncate(dscale as usize);
    let sign = if sign == NUMERIC_NEG { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{integer}")
    } else {
        format!("{sign}{integer}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binary numeric for digits (base 10000), weight, sign and dscale.
    fn num(digits: &[i16], weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&(digits.len() as i16).to_be_bytes());
        v.extend_from_slice(&weight.to_be_bytes());
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    fn ok(v: &[u8], precision: u8, scale: i8) -> i128 {
        numeric(v, precision, scale).unwrap_or_else(|_| panic!("{} should fit", text(v)))
    }

    #[test]
    fn numerics_scale_exactly() {
        // -1234567890.12 = [12, 3456, 7890] . [1200], weight 2
        let v = num(&[12, 3456, 7890, 1200], 2, NUMERIC_NEG, 2);
        assert_eq!(text(&v), "-1234567890.12");
        assert_eq!(ok(&v, 12, 2), -123_456_789_012);
        assert_eq!(ok(&v, 14, 4), -12_345_678_901_200);
        // 0.000000001 = digit 1000 at weight -3 (1000 * 10000^-3)
        let v = num(&[1000], -3, NUMERIC_POS, 9);
        assert_eq!(text(&v), "0.000000001");
        assert_eq!(ok(&v, 38, 9), 1);
        assert!(matches!(numeric(&v, 38, 8), Err(Problem::DoesNotFit(_))));
        // zero has no digits
        assert_eq!(ok(&num(&[], 0, NUMERIC_POS, 0), 5, 0), 0);
        // 12300 = [1, 2300], weight 1
        assert_eq!(ok(&num(&[1, 2300], 1, NUMERIC_POS, 0), 5, 0), 12300);
        // 38 nines
        let mut digits = vec![99];
        digits.extend(std::iter::repeat_n(9999, 9));
        let v = num(&digits, 9, NUMERIC_NEG, 0);
        assert_eq!(ok(&v, 38, 0), -(10i128.pow(38) - 1));
        assert!(matches!(numeric(&v, 37, 0), Err(Problem::DoesNotFit(_))));
        assert!(matches!(numeric(&v, 38, 1), Err(Problem::DoesNotFit(_))));
    }

    #[test]
    fn special_numerics_do_not_fit() {
        for sign in [NUMERIC_NAN, NUMERIC_PINF, NUMERIC_NINF] {
            assert!(matches!(
                numeric(&num(&[], 0, sign, 0), 10, 2),
                Err(Problem::DoesNotFit(_))
            ));
        }
    }
}
