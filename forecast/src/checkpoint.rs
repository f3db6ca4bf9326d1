//! A small, versioned binary encoding for model checkpoints: little-endian numbers and
//! length-prefixed sequences. Models write their per-series state with [`Enc`] and read it back
//! with [`Dec`]; a truncated or foreign buffer is an error, never a panic.

use anyhow::{Result, bail};

/// Writes a checkpoint.
#[derive(Debug, Default)]
pub struct Enc {
    buf: Vec<u8>,
}

impl Enc {
    /// Starts a buffer tagged with a model-specific format version.
    pub fn new(version: u8) -> Self {
        Self { buf: vec![version] }
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }
    /// A length-prefixed run of f64s.
    pub fn f64s<'a>(&mut self, vs: impl ExactSizeIterator<Item = &'a f64>) -> &mut Self {
        self.u32(vs.len() as u32);
        for v in vs {
            self.f64(*v);
        }
        self
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.buf.extend_from_slice(b);
        self
    }
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads a checkpoint written by [`Enc`].
#[derive(Debug)]
pub struct Dec<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Dec<'a> {
    /// Opens a buffer of any format version in `versions`; returns it with the version.
    pub fn versioned(buf: &'a [u8], versions: std::ops::RangeInclusive<u8>) -> Result<(Self, u8)> {
        match buf.first() {
            Some(&v) if versions.contains(&v) => Ok((Self { buf, at: 1 }, v)),
            Some(&v) => bail!("checkpoint format {v}, expected one of {versions:?}"),
            None => bail!("empty checkpoint"),
        }
    }

    /// Opens a buffer and checks its format version.
    pub fn new(buf: &'a [u8], version: u8) -> Result<Self> {
        match buf.first() {
            Some(&v) if v == version => Ok(Self { buf, at: 1 }),
            Some(&v) => bail!("checkpoint format {v}, expected {version}"),
            None => bail!("empty checkpoint"),
        }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let Some(end) = end else {
            bail!(
                "checkpoint truncated: need {n} bytes at {} of {}",
                self.at,
                self.buf.len()
            )
        };
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    pub fn f64(&mut self) -> Result<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }
    pub fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => bail!("checkpoint: {b} is not a boolean"),
        }
    }
    /// A run written by [`Enc::f64s`].
    pub fn f64s(&mut self) -> Result<Vec<f64>> {
        let n = self.u32()? as usize;
        let raw = self.take(n.saturating_mul(8))?;
        Ok(raw
            .chunks_exact(8)
            .map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                f64::from_le_bytes(a)
            })
            .collect())
    }
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// Fails unless every byte was read.
    pub fn end(self) -> Result<()> {
        if self.at == self.buf.len() {
            Ok(())
        } else {
            bail!("checkpoint has {} trailing bytes", self.buf.len() - self.at)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_bad_buffers() {
        let mut e = Enc::new(3);
        e.u32(7)
            .f64(-1.5)
            .i64(-9)
            .bool(true)
            .f64s([1.0, 2.0].iter())
            .bytes(b"ab");
        let buf = e.finish();
        let mut d = Dec::new(&buf, 3).expect("version");
        assert_eq!(d.u32().expect("u32"), 7);
        assert_eq!(d.f64().expect("f64"), -1.5);
        assert_eq!(d.i64().expect("i64"), -9);
        assert!(d.bool().expect("bool"));
        assert_eq!(d.f64s().expect("f64s"), vec![1.0, 2.0]);
        assert_eq!(d.bytes().expect("bytes"), b"ab");
        d.end().expect("all read");

        assert!(Dec::new(&buf, 4).is_err(), "wrong version");
        assert!(Dec::new(&[], 3).is_err(), "empty");
        let mut short = Dec::new(&buf[..6], 3).expect("version");
        assert!(short.u32().is_ok());
        assert!(short.f64().is_err(), "truncated");
        let mut huge = Dec::new(&[3, 255, 255, 255, 255], 3).expect("version");
        assert!(huge.f64s().is_err(), "length beyond the buffer");
    }
}
