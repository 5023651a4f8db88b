//! The binary `COPY … TO STDOUT (FORMAT binary)` format, read a whole row at a time.
//!
//! A header (11-byte signature, flags, extension area), then one tuple per row: a 16-bit field count
//! and, per field, a 32-bit length (-1 for NULL) followed by that many bytes; a count of -1 ends it.
//!
//! The server sends each row as its own CopyData message, so a row is almost always whole inside the
//! chunk the connection hands over: it is then lent to the decoder straight from that chunk, without a
//! copy. Only a row that spans chunks (and the header) passes through a small carry buffer.

use std::io::{self, BufRead};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// A malformed stream, or the connection failing under it.
pub enum CopyError {
    /// Reading from the connection failed (the server's error travels inside).
    Io(io::Error),
    /// The bytes are not the binary COPY format.
    Format(String),
}

impl From<io::Error> for CopyError {
    fn from(error: io::Error) -> Self {
        CopyError::Io(error)
    }
}

/// What the bytes at the start of a buffer hold.
enum Extent {
    /// A whole row of this many bytes (field count included).
    Row(usize),
    /// The end-of-data marker.
    End,
    /// Not a whole row yet.
    Partial,
}

/// How far the row at the start of `bytes` extends (every field length is checked against the bytes).
#[inline]
fn extent(bytes: &[u8]) -> Result<Extent, CopyError> {
    let Some(head) = bytes.get(..2) else {
        return Ok(Extent::Partial);
    };
    let count = i16::from_be_bytes([head[0], head[1]]);
    if count == -1 {
        return Ok(Extent::End);
    }
    if count < 0 {
        return Err(CopyError::Format(format!("a row with {count} fields")));
    }
    let mut pos = 2usize;
    for _ in 0..count {
        let Some(len) = bytes.get(pos..pos + 4) else {
            return Ok(Extent::Partial);
        };
        let len = i32::from_be_bytes([len[0], len[1], len[2], len[3]]);
        pos += 4;
        if len > 0 {
            pos += len as usize;
        } else if len < -1 {
            return Err(CopyError::Format(format!("a field of length {len}")));
        }
    }
    Ok(if pos <= bytes.len() {
        Extent::Row(pos)
    } else {
        Extent::Partial
    })
}

/// One row as COPY sent it: its field count, then its fields (see [`Row::fields`]).
pub struct Row<'a> {
    bytes: &'a [u8],
}

impl<'a> Row<'a> {
    /// The number of fields.
    #[inline]
    pub fn len(&self) -> usize {
        i16::from_be_bytes([self.bytes[0], self.bytes[1]]) as usize
    }

    /// The fields in order: `None` for NULL, else the value's bytes.
    #[inline]
    pub fn fields(&self) -> Fields<'a> {
        Fields {
            bytes: self.bytes,
            pos: 2,
        }
    }
}

/// The fields of a [`Row`], whose extent has been checked already.
pub struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Fields<'a> {
    type Item = Option<&'a [u8]>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let head = self.bytes.get(self.pos..self.pos + 4)?;
        let len = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        self.pos += 4;
        if len < 0 {
            return Some(None);
        }
        let start = self.pos;
        self.pos += len as usize;
        Some(Some(&self.bytes[start..self.pos]))
    }
}

/// Reads rows of a binary COPY stream.
pub struct CopyReader<R> {
    inner: R,
    /// Bytes of a row that spans chunks (or of the header), from `carry_pos` on.
    carry: Vec<u8>,
    carry_pos: usize,
    /// Bytes of the current chunk lent out as the last row, consumed at the next call.
    lent: usize,
    consumed: u64,
}

impl<R: BufRead> CopyReader<R> {
    /// Read from `inner` (the connection's COPY data).
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            carry: Vec::with_capacity(64 * 1024),
            carry_pos: 0,
            lent: 0,
            consumed: 0,
        }
    }

    /// Bytes of COPY data consumed so far (to size batches).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Move the next chunk into the carry buffer; `false` at the end of the data.
    fn carry_more(&mut self) -> io::Result<bool> {
        if self.carry_pos > 0 {
            self.carry.drain(..self.carry_pos);
            self.carry_pos = 0;
        }
        let chunk = self.inner.fill_buf()?;
        if chunk.is_empty() {
            return Ok(false);
        }
        let len = chunk.len();
        self.carry.extend_from_slice(chunk);
        self.inner.consume(len);
        Ok(true)
    }

    /// Check the signature and skip the header.
    pub fn header(&mut self) -> Result<(), CopyError> {
        let short = || CopyError::Format("the COPY data ends inside its header".into());
        while self.carry.len() - self.carry_pos < SIGNATURE.len() + 8 {
            if !self.carry_more()? {
                return Err(short());
            }
        }
        let head = &self.carry[self.carry_pos..];
        if &head[..SIGNATURE.len()] != SIGNATURE {
            return Err(CopyError::Format(
                "the COPY data does not start with the binary signature".into(),
            ));
        }
        let word = |at: usize| u32::from_be_bytes(head[at..at + 4].try_into().expect("4 bytes"));
        if word(SIGNATURE.len()) & (1 << 16) != 0 {
            return Err(CopyError::Format(
                "the COPY data carries OIDs, which this reader does not expect".into(),
            ));
        }
        let length = SIGNATURE.len() + 8 + word(SIGNATURE.len() + 4) as usize;
        while self.carry.len() - self.carry_pos < length {
            if !self.carry_more()? {
                return Err(short());
            }
        }
        self.carry_pos += length;
        self.consumed += length as u64;
        Ok(())
    }

    /// The next row, or `None` at the end of the data.
    #[inline]
    pub fn row(&mut self) -> Result<Option<Row<'_>>, CopyError> {
        if self.lent > 0 {
            self.inner.consume(self.lent);
            self.lent = 0;
        }
        if self.carry_pos == self.carry.len() {
            // Nothing carried: lend the row straight from the connection's chunk if it is whole.
            self.carry.clear();
            self.carry_pos = 0;
            let found = {
                let chunk = self.inner.fill_buf()?;
                if chunk.is_empty() {
                    return Err(CopyError::Format(
                        "the COPY data ends without its end marker".into(),
                    ));
                }
                extent(chunk)?
            };
            match found {
                Extent::Row(n) => {
                    self.lent = n;
                    self.consumed += n as u64;
                    let chunk = self.inner.fill_buf()?; // the same bytes again: nothing was consumed
                    return Ok(Some(Row { bytes: &chunk[..n] }));
                }
                Extent::End => {
                    self.inner.consume(2);
                    self.consumed += 2;
                    return Ok(None);
                }
                Extent::Partial => {
                    self.carry_more()?;
                }
            }
        }
        let n = loop {
            match extent(&self.carry[self.carry_pos..])? {
                Extent::Row(n) => break n,
                Extent::End => {
                    self.carry_pos += 2;
                    self.consumed += 2;
                    return Ok(None);
                }
                Extent::Partial => {
                    if !self.carry_more()? {
                        return Err(CopyError::Format(
                            "the COPY data ends in the middle of a row".into(),
                        ));
                    }
                }
            }
        };
        let start = self.carry_pos;
        self.carry_pos += n;
        self.consumed += n as u64;
        Ok(Some(Row {
            bytes: &self.carry[start..start + n],
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Vec<u8> {
        let mut data = Vec::new();
        data.extend_from_slice(SIGNATURE);
        data.extend_from_slice(&0u32.to_be_bytes());
        data.extend_from_slice(&0u32.to_be_bytes());
        for _ in 0..2 {
            data.extend_from_slice(&2i16.to_be_bytes());
            data.extend_from_slice(&3i32.to_be_bytes());
            data.extend_from_slice(b"abc");
            data.extend_from_slice(&(-1i32).to_be_bytes());
        }
        data.extend_from_slice(&(-1i16).to_be_bytes());
        data
    }

    fn read_all(chunk: usize) {
        let data = stream();
        let mut reader = CopyReader::new(io::BufReader::with_capacity(chunk, &data[..]));
        assert!(reader.header().is_ok());
        for _ in 0..2 {
            let Ok(Some(row)) = reader.row() else {
                panic!("a row")
            };
            assert_eq!(row.len(), 2);
            let fields: Vec<_> = row.fields().collect();
            assert_eq!(fields, vec![Some(&b"abc"[..]), None]);
        }
        assert!(matches!(reader.row(), Ok(None)));
        assert_eq!(reader.consumed(), data.len() as u64);
    }

    #[test]
    fn rows_fields_and_nulls_whole_or_across_chunks() {
        read_all(3); // every value spans chunks
        read_all(1 << 16); // every row is lent straight from one chunk
        read_all(20); // some rows whole, some carried
    }

    #[test]
    fn truncated_data_is_an_error() {
        let data = stream();
        let cut = &data[..data.len() - 4];
        let mut reader = CopyReader::new(io::BufReader::with_capacity(7, cut));
        assert!(reader.header().is_ok());
        assert!(matches!(reader.row(), Ok(Some(_))));
        assert!(matches!(reader.row(), Err(CopyError::Format(_))));
    }
}
