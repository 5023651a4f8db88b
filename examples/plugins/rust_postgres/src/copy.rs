//! The binary `COPY … TO STDOUT (FORMAT binary)` format, read row by row.
//!
//! A header (11-byte signature, flags, extension area), then one tuple per row: a 16-bit field count
//! and, per field, a 32-bit length (-1 for NULL) followed by that many bytes; a count of -1 ends it.
//! Rows may span the chunks the connection delivers, so bytes pass through one small buffer.

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

/// Reads rows of a binary COPY stream.
pub struct CopyReader<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    consumed: u64,
}

impl<R: BufRead> CopyReader<R> {
    /// Read from `inner` (the connection's COPY data).
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(64 * 1024),
            pos: 0,
            consumed: 0,
        }
    }

    /// Bytes of COPY data consumed so far (to size batches).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Make `n` unread bytes available; `false` if the stream ends first.
    #[inline]
    fn fill(&mut self, n: usize) -> io::Result<bool> {
        while self.buf.len() - self.pos < n {
            self.buf.drain(..self.pos); // usually nothing is left: the last row was read whole
            self.pos = 0;
            let chunk = self.inner.fill_buf()?;
            if chunk.is_empty() {
                return Ok(false);
            }
            let len = chunk.len();
            self.buf.extend_from_slice(chunk);
            self.inner.consume(len);
        }
        Ok(true)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&[u8], CopyError> {
        if !self.fill(n)? {
            return Err(CopyError::Format(
                "the COPY data ends in the middle of a row".into(),
            ));
        }
        let start = self.pos;
        self.pos += n;
        self.consumed += n as u64;
        Ok(&self.buf[start..start + n])
    }

    /// Check the signature and skip the header.
    pub fn header(&mut self) -> Result<(), CopyError> {
        if self.take(SIGNATURE.len())? != SIGNATURE {
            return Err(CopyError::Format(
                "the COPY data does not start with the binary signature".into(),
            ));
        }
        let flags = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes"));
        if flags & (1 << 16) != 0 {
            return Err(CopyError::Format(
                "the COPY data carries OIDs, which this reader does not expect".into(),
            ));
        }
        let extension = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes"));
        self.take(extension as usize)?;
        Ok(())
    }

    /// The field count of the next row, or `None` at the end of the data.
    #[inline]
    pub fn row(&mut self) -> Result<Option<usize>, CopyError> {
        let count = i16::from_be_bytes(self.take(2)?.try_into().expect("2 bytes"));
        if count == -1 {
            return Ok(None);
        }
        usize::try_from(count)
            .map(Some)
            .map_err(|_| CopyError::Format(format!("a row with {count} fields")))
    }

    /// The next field of the current row: `None` for NULL, else its bytes.
    #[inline]
    pub fn field(&mut self) -> Result<Option<&[u8]>, CopyError> {
        let len = i32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes"));
        if len < 0 {
            return Ok(None);
        }
        self.take(len as usize).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_fields_and_nulls_across_chunks() {
        let mut data = Vec::new();
        data.extend_from_slice(SIGNATURE);
        data.extend_from_slice(&0u32.to_be_bytes());
        data.extend_from_slice(&0u32.to_be_bytes());
        data.extend_from_slice(&2i16.to_be_bytes());
        data.extend_from_slice(&3i32.to_be_bytes());
        data.extend_from_slice(b"abc");
        data.extend_from_slice(&(-1i32).to_be_bytes());
        data.extend_from_slice(&(-1i16).to_be_bytes());
        // A reader that hands out 3 bytes at a time, so every value spans chunks.
        let mut reader = CopyReader::new(io::BufReader::with_capacity(3, &data[..]));
        assert!(reader.header().is_ok());
        assert!(matches!(reader.row(), Ok(Some(2))));
        assert!(matches!(reader.field(), Ok(Some(b"abc"))));
        assert!(matches!(reader.field(), Ok(None)));
        assert!(matches!(reader.row(), Ok(None)));
        assert_eq!(reader.consumed(), data.len() as u64);
    }
}
