//! Where the layer stream ends: short final blocks padded, a cut inside an entry noticed.

use std::cell::Cell;
use std::io::{self, Read};

use super::BLOCK;

/// How far the tar reader has read the layer stream, and whether it has met the end.
#[derive(Default)]
pub(super) struct StreamEnd {
    position: Cell<u64>,
    /// The stream returned end-of-file. The tar reader asks for more only while it still
    /// expects data, so this during an entry means the entry was cut short.
    pub(super) reached: Cell<bool>,
}

/// Reads the layer stream; when it ends off a 512-byte boundary, supplies the zeros up to the
/// boundary, as if the last block's padding were there. The caller checks that the end did
/// not come inside an entry's data ([`StreamEnd::reached`] after the entry). A header cut
/// short is completed with zeros: it fails its checksum or, cut only in its unused tail,
/// reads and then has no data.
pub(super) struct PaddedReader<'a, R> {
    inner: R,
    end: &'a StreamEnd,
    padding_left: u64,
}

impl<'a, R> PaddedReader<'a, R> {
    pub(super) fn new(inner: R, end: &'a StreamEnd) -> Self {
        PaddedReader {
            inner,
            end,
            padding_left: 0,
        }
    }
}

impl<R: Read> Read for PaddedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = if self.padding_left > 0 {
            let n = buf.len().min(self.padding_left as usize);
            buf.iter_mut().take(n).for_each(|b| *b = 0);
            self.padding_left -= n as u64;
            n
        } else {
            let n = self.inner.read(buf)?;
            let position = self.end.position.get();
            if n == 0 && !buf.is_empty() {
                self.end.reached.set(true);
                if !position.is_multiple_of(BLOCK) {
                    self.padding_left = BLOCK - position % BLOCK;
                    return self.read(buf);
                }
            }
            n
        };
        self.end.position.set(self.end.position.get() + n as u64);
        Ok(n)
    }
}
