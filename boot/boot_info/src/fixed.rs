//! Fixed-capacity containers: the boot description is built before any heap exists.

use core::fmt;
use core::ops::Deref;

/// A vector with room for at most `N` elements, stored inline.
///
/// Elements are `Copy + Default` so that the backing array can be initialised without
/// `unsafe`; slots past `len` hold default values and are never exposed.
#[derive(Clone, Copy)]
pub struct FixedVec<T: Copy + Default, const N: usize> {
    items: [T; N],
    len: usize,
}

/// Returned by [`FixedVec::push`] when the vector is full; carries the rejected element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityError<T>(pub T);

impl<T: Copy + Default, const N: usize> FixedVec<T, N> {
    /// The number of elements the vector can hold.
    pub const CAPACITY: usize = N;

    /// An empty vector.
    pub fn new() -> Self {
        Self {
            items: [T::default(); N],
            len: 0,
        }
    }

    /// Appends `item`, or gives it back if the vector is full.
    pub fn push(&mut self, item: T) -> Result<(), CapacityError<T>> {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = item;
                self.len += 1;
                Ok(())
            }
            None => Err(CapacityError(item)),
        }
    }

    /// Removes every element.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// The elements as a slice.
    pub fn as_slice(&self) -> &[T] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    /// The elements as a mutable slice.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        self.items.get_mut(..self.len).unwrap_or(&mut [])
    }
}

impl<T: Copy + Default, const N: usize> Default for FixedVec<T, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Copy + Default, const N: usize> Deref for FixedVec<T, N> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

impl<T: Copy + Default + fmt::Debug, const N: usize> fmt::Debug for FixedVec<T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl<T: Copy + Default + PartialEq, const N: usize> PartialEq for FixedVec<T, N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<T: Copy + Default + Eq, const N: usize> Eq for FixedVec<T, N> {}

impl<'a, T: Copy + Default, const N: usize> IntoIterator for &'a FixedVec<T, N> {
    type Item = &'a T;
    type IntoIter = core::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

/// A UTF-8 string of at most `N` bytes, stored inline.
///
/// Only ever holds valid UTF-8: every constructor validates or cuts at a character boundary.
#[derive(Clone, Copy)]
pub struct FixedStr<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

/// Returned by [`FixedStr::try_from_str`] when the string does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StrTooLong {
    /// Length of the rejected string in bytes.
    pub len: usize,
    /// Capacity of the buffer in bytes.
    pub cap: usize,
}

impl<const N: usize> FixedStr<N> {
    /// The number of bytes the string can hold.
    pub const CAPACITY: usize = N;

    /// The empty string.
    pub const fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }

    /// Copies `s`, or fails if it is longer than `N` bytes.
    pub fn try_from_str(s: &str) -> Result<Self, StrTooLong> {
        let mut out = Self::new();
        match out.bytes.get_mut(..s.len()) {
            Some(dst) => {
                dst.copy_from_slice(s.as_bytes());
                out.len = s.len();
                Ok(out)
            }
            None => Err(StrTooLong {
                len: s.len(),
                cap: N,
            }),
        }
    }

    /// Copies as much of `s` as fits, cutting at a character boundary.
    pub fn from_str_truncated(s: &str) -> Self {
        let mut end = s.len().min(N);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        // `end` is a char boundary no larger than `N`, so this cannot fail.
        Self::try_from_str(s.get(..end).unwrap_or("")).unwrap_or_default()
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // Constructors only store valid UTF-8; the fallback is unreachable in practice.
        self.bytes
            .get(..self.len)
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the string is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Deref for FixedStr<N> {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> PartialEq for FixedStr<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<const N: usize> Eq for FixedStr<N> {}

impl<const N: usize> PartialEq<str> for FixedStr<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl<const N: usize> PartialEq<&str> for FixedStr<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_vec_rejects_push_beyond_capacity() {
        let mut v: FixedVec<u32, 2> = FixedVec::new();
        assert_eq!(v.push(1), Ok(()));
        assert_eq!(v.push(2), Ok(()));
        assert_eq!(v.push(3), Err(CapacityError(3)));
        assert_eq!(v.as_slice(), &[1, 2]);
        v.clear();
        assert!(v.is_empty());
    }

    #[test]
    fn fixed_str_truncates_at_char_boundary() {
        // "é" is two bytes; a 3-byte buffer can hold "aé" but not "aéb".
        let s = FixedStr::<3>::from_str_truncated("aéb");
        assert_eq!(s.as_str(), "aé");
        let s = FixedStr::<2>::from_str_truncated("aé");
        assert_eq!(s.as_str(), "a");
        assert_eq!(
            FixedStr::<2>::try_from_str("abc"),
            Err(StrTooLong { len: 3, cap: 2 })
        );
    }
}
