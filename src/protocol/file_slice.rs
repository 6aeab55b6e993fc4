//! Records that go on the wire straight from a stored segment file.
//!
//! A Fetch answer's records are whole stored batches, the bytes of a
//! segment file. Copying them into the response buffer costs a read into
//! memory and a copy into the buffer, and the socket copies them once more;
//! a [`FileSlice`] lets the connection hand them to the socket with
//! `sendfile` instead, from the page cache. The encoder writes the records'
//! length as usual, then sets the slice aside in [`DeferredSlices`] with
//! the buffer position it belongs at; the connection writes the buffer up
//! to there, the slice, and so on.
//!
//! Stored batches are never rewritten in place (segments only grow, and are
//! deleted whole), so a slice of committed bytes reads the same later; the
//! open file keeps a deleted segment's data until the slice is sent.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;

/// `len` bytes of a stored file from `position`.
#[derive(Clone, Debug)]
pub struct FileSlice {
    pub file: Arc<File>,
    pub position: u64,
    pub len: usize,
}

impl FileSlice {
    /// The slice's bytes, read into memory (tests, and encoders that were
    /// given nowhere to set slices aside).
    pub fn read(&self) -> std::io::Result<Bytes> {
        let mut buf = vec![0u8; self.len];
        self.file.read_exact_at(&mut buf, self.position)?;
        Ok(Bytes::from(buf))
    }
}

impl PartialEq for FileSlice {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.file, &other.file) && self.position == other.position && self.len == other.len
    }
}

/// The records of a Fetch answer: bytes in memory (small reads, and every
/// decoded response), or a slice of a stored file.
#[derive(Clone, Debug, PartialEq)]
pub enum FetchedRecords {
    Bytes(Bytes),
    File(FileSlice),
}

impl Default for FetchedRecords {
    fn default() -> Self {
        FetchedRecords::Bytes(Bytes::new())
    }
}

impl From<Bytes> for FetchedRecords {
    fn from(bytes: Bytes) -> Self {
        FetchedRecords::Bytes(bytes)
    }
}

impl FetchedRecords {
    pub fn len(&self) -> usize {
        match self {
            FetchedRecords::Bytes(b) => b.len(),
            FetchedRecords::File(slice) => slice.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, when they are in memory: always so for a decoded answer.
    pub fn bytes(&self) -> Option<&Bytes> {
        match self {
            FetchedRecords::Bytes(b) => Some(b),
            FetchedRecords::File(_) => None,
        }
    }

    /// The bytes, read from the file if need be.
    pub fn to_bytes(&self) -> std::io::Result<Bytes> {
        match self {
            FetchedRecords::Bytes(b) => Ok(b.clone()),
            FetchedRecords::File(slice) => slice.read(),
        }
    }
}

/// File slices an encoder set aside, in order, each with the position in
/// its buffer where the slice's bytes belong.
#[derive(Default, Debug)]
pub struct DeferredSlices(RefCell<Vec<(usize, FileSlice)>>);

impl DeferredSlices {
    pub fn push(&self, position: usize, slice: FileSlice) {
        self.0.borrow_mut().push((position, slice));
    }

    /// Bytes set aside so far.
    pub fn bytes(&self) -> usize {
        self.0.borrow().iter().map(|(_, s)| s.len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }

    /// Takes the slices out, leaving none.
    pub fn take(&self) -> Vec<(usize, FileSlice)> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
}
