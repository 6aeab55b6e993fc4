//! Records that go on the wire straight from a stored segment file, and
//! other large byte fields that are written from where they already are.
//!
//! A Fetch answer's records are whole stored batches, the bytes of a
//! segment file. Copying them into the response buffer costs a read into
//! memory and a copy into the buffer, and the socket copies them once more;
//! a [`FileSlice`] lets the connection hand them to the socket with
//! `sendfile` instead, from the page cache. The encoder writes the records'
//! length as usual, then sets the slice aside in [`DeferredSlices`] with
//! the buffer position it belongs at; the connection writes the buffer up
//! to there, the slice, and so on. A producer does the same with the
//! record batches it built ([`Deferred::Bytes`]), so a batch is not copied
//! into the request frame.
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

impl FileSlice {
    /// The slice's bytes for a stream whose length prefix already counts
    /// them: on a read error, zeros of the same length (the reader's CRC
    /// check refuses them), with the error logged.
    pub fn read_or_zeros(&self) -> Bytes {
        self.read().unwrap_or_else(|e| {
            tracing::error!(error = %e, position = self.position, "reading stored records failed");
            Bytes::from(vec![0u8; self.len])
        })
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

/// A part of an encoded message left out of the encoder's buffer.
#[derive(Clone, Debug)]
pub enum Deferred {
    /// Sent from the file (sendfile).
    File(FileSlice),
    /// Bytes already in memory (a record batch a producer built), written
    /// from where they are with a vectored write instead of being copied.
    Bytes(Bytes),
}

impl Deferred {
    pub fn len(&self) -> usize {
        match self {
            Deferred::File(slice) => slice.len,
            Deferred::Bytes(bytes) => bytes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What an encoder set aside, in order, each with the position in its
/// buffer where its bytes belong: every file slice, and byte fields of at
/// least `bytes_min` bytes.
#[derive(Debug)]
pub struct DeferredSlices {
    parts: RefCell<Vec<(usize, Deferred)>>,
    bytes_min: usize,
}

impl Default for DeferredSlices {
    /// File slices only: byte fields are copied into the buffer.
    fn default() -> Self {
        DeferredSlices::with_bytes_from(usize::MAX)
    }
}

impl DeferredSlices {
    /// File slices, and byte fields of `bytes_min` bytes or more.
    pub fn with_bytes_from(bytes_min: usize) -> Self {
        DeferredSlices {
            parts: RefCell::new(Vec::new()),
            bytes_min,
        }
    }

    /// Whether a byte field of `len` bytes is set aside.
    pub fn takes_bytes(&self, len: usize) -> bool {
        len >= self.bytes_min
    }

    pub fn push(&self, position: usize, part: Deferred) {
        self.parts.borrow_mut().push((position, part));
    }

    /// Bytes set aside so far.
    pub fn bytes(&self) -> usize {
        self.parts.borrow().iter().map(|(_, p)| p.len()).sum()
    }

    /// Takes the parts out, leaving none.
    pub fn take(&self) -> Vec<(usize, Deferred)> {
        std::mem::take(&mut *self.parts.borrow_mut())
    }
}
