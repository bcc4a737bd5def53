//! `Value`, `Array` and `Lock`: plain data in shared memory with a process-shared lock.

use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use super::shm::{RawLock, Region};
use super::MpError;

/// Plain data that may live in shared memory: no pointers, no destructor, every copy of
/// the bytes a valid value. Python's typecodes (`'i'`, `'d'`, ...) become Rust types.
///
/// # Safety
/// Implement it only for `Copy` types without pointers, references or handles (their
/// targets would not exist in the other process). Implemented for the integers, floats,
/// `bool`, `char` and arrays of those.
///
/// A `String` is not plain data, so this does not compile:
///
/// ```compile_fail
/// let v = conclab::multiprocessing::Value::new(String::from("no"));
/// ```
pub unsafe trait Pod: Copy + Send + Sync + 'static {}

macro_rules! pod {
    ($($t:ty),*) => { $(
        // SAFETY: a primitive without pointers.
        unsafe impl Pod for $t {}
    )* };
}
pod!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, bool, char);
// SAFETY: an array of plain data is plain data.
unsafe impl<T: Pod, const N: usize> Pod for [T; N] {}

#[repr(C)]
struct Header {
    lock: RawLock,
    len: usize,
}

/// A mapping that starts with a lock and a length, followed by `len` values of `T`.
struct Block<T> {
    region: Region,
    _t: PhantomData<T>,
}

impl<T: Pod> Block<T> {
    fn new(values: &[T]) -> Result<Block<T>, MpError> {
        let offset = data_offset::<T>();
        let region = super::shm::map(offset + std::mem::size_of_val(values))?;
        let header = region.ptr().cast::<Header>();
        // SAFETY: the region is fresh, zeroed, large enough and suitably aligned (page).
        unsafe {
            super::shm::init_lock(std::ptr::addr_of_mut!((*header).lock))?;
            (*header).len = values.len();
            let data = region.ptr().add(offset).cast::<T>();
            std::ptr::copy_nonoverlapping(values.as_ptr(), data, values.len());
        }
        Ok(Block {
            region,
            _t: PhantomData,
        })
    }

    fn header(&self) -> &Header {
        // SAFETY: initialised in `new`; the lock is used through shared references only.
        unsafe { &*self.region.ptr().cast::<Header>() }
    }

    fn len(&self) -> usize {
        self.header().len
    }

    fn data(&self) -> *mut T {
        // SAFETY: inside the mapping.
        unsafe { self.region.ptr().add(data_offset::<T>()).cast() }
    }

    fn lock(&self) -> BlockGuard<'_, T> {
        self.header().lock.lock();
        BlockGuard {
            block: self,
            _not_send: PhantomData,
        }
    }
}

fn data_offset<T>() -> usize {
    std::mem::size_of::<Header>().next_multiple_of(std::mem::align_of::<T>().max(16))
}

struct BlockGuard<'a, T: Pod> {
    block: &'a Block<T>,
    // A pthread mutex must be unlocked by the thread that locked it: keep guards on it.
    _not_send: PhantomData<*const ()>,
}

impl<T: Pod> BlockGuard<'_, T> {
    fn slice(&self) -> &[T] {
        // SAFETY: we hold the lock; the data was initialised in `Block::new`.
        unsafe { std::slice::from_raw_parts(self.block.data(), self.block.len()) }
    }
    fn slice_mut(&mut self) -> &mut [T] {
        // SAFETY: we hold the lock, so this is the only access in any process.
        unsafe { std::slice::from_raw_parts_mut(self.block.data(), self.block.len()) }
    }
}

impl<T: Pod> Drop for BlockGuard<'_, T> {
    fn drop(&mut self) {
        self.block.header().lock.unlock();
    }
}

/// Python's `multiprocessing.Value`: one `T` in shared memory plus a process-shared lock.
///
/// Make it before forking; children then read and write the same memory. `get` and `set`
/// each take the lock, but `v.set(v.get() + 1)` is two steps that another process can come
/// between, exactly like Python's `v.value += 1`: hold [`get_lock`](Value::get_lock) for a
/// read-modify-write. A clone is another handle to the same memory.
///
/// ```
/// use conclab::multiprocessing::{Process, Value};
///
/// let counter = Value::new(0i64).unwrap();
/// let children: Vec<_> = (0..4)
///     .map(|_| {
///         Process::spawn(|| {
///             for _ in 0..1000 {
///                 *counter.get_lock() += 1;
///             }
///         })
///         .unwrap()
///     })
///     .collect();
/// for c in children {
///     c.join().unwrap();
/// }
/// assert_eq!(counter.get(), 4000);
/// ```
pub struct Value<T: Pod> {
    block: Arc<Block<T>>,
}

impl<T: Pod> Clone for Value<T> {
    fn clone(&self) -> Self {
        Value {
            block: Arc::clone(&self.block),
        }
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Value").field(&self.get()).finish()
    }
}

impl<T: Pod> Value<T> {
    /// Maps shared memory holding `value` (Python's `Value('i', 1)`).
    ///
    /// ```
    /// let v = conclab::multiprocessing::Value::new(1.5f64).unwrap();
    /// assert_eq!(v.get(), 1.5);
    /// ```
    pub fn new(value: T) -> Result<Value<T>, MpError> {
        Ok(Value {
            block: Arc::new(Block::new(&[value])?),
        })
    }

    /// Reads the value under the lock (Python's `.value`).
    ///
    /// ```
    /// let v = conclab::multiprocessing::Value::new(7u8).unwrap();
    /// assert_eq!(v.get(), 7);
    /// ```
    pub fn get(&self) -> T {
        *self.get_lock()
    }

    /// Writes the value under the lock (Python's `.value = x`).
    ///
    /// ```
    /// let v = conclab::multiprocessing::Value::new(false).unwrap();
    /// v.set(true);
    /// assert!(v.get());
    /// ```
    pub fn set(&self, value: T) {
        *self.get_lock() = value;
    }

    /// Takes the process-shared lock; the guard derefs to the value and unlocks on drop
    /// (Python's `with v.get_lock(): v.value += 1`).
    ///
    /// ```
    /// let v = conclab::multiprocessing::Value::new(1i32).unwrap();
    /// {
    ///     let mut guard = v.get_lock();
    ///     *guard += 1;
    /// }
    /// assert_eq!(v.get(), 2);
    /// ```
    pub fn get_lock(&self) -> ValueGuard<'_, T> {
        ValueGuard {
            inner: self.block.lock(),
        }
    }
}

/// The locked value of a [`Value`]; unlocks when dropped.
///
/// ```
/// let v = conclab::multiprocessing::Value::new(10u32).unwrap();
/// let mut g = v.get_lock();
/// *g *= 3;
/// assert_eq!(*g, 30);
/// ```
#[must_use = "the value is unlocked again as soon as the guard is dropped"]
pub struct ValueGuard<'a, T: Pod> {
    inner: BlockGuard<'a, T>,
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner.slice()[0]
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner.slice_mut()[0]
    }
}

/// Python's `multiprocessing.Array`: a fixed-length array of `T` in shared memory with a
/// process-shared lock. A clone is another handle to the same memory.
///
/// ```
/// use conclab::multiprocessing::{Array, Process};
///
/// let arr = Array::new(&[1, 2, 3, 4]).unwrap();
/// Process::spawn(|| {
///     for x in arr.get_lock().iter_mut() {
///         *x *= 2;
///     }
/// })
/// .unwrap()
/// .join()
/// .unwrap();
/// assert_eq!(arr.to_vec(), vec![2, 4, 6, 8]);
/// ```
pub struct Array<T: Pod> {
    block: Arc<Block<T>>,
}

impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            block: Arc::clone(&self.block),
        }
    }
}

impl<T: Pod + std::fmt::Debug> std::fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Array").field(&self.to_vec()).finish()
    }
}

impl<T: Pod> Array<T> {
    /// Maps shared memory holding a copy of `values` (Python's `Array('i', [1, 2, 3])`).
    ///
    /// ```
    /// let a = conclab::multiprocessing::Array::new(&[0.5f32, 1.5]).unwrap();
    /// assert_eq!(a.len(), 2);
    /// ```
    pub fn new(values: &[T]) -> Result<Array<T>, MpError> {
        Ok(Array {
            block: Arc::new(Block::new(values)?),
        })
    }

    /// `len` copies of `value` (Python's `Array('i', 10)` gives zeros).
    ///
    /// ```
    /// let a = conclab::multiprocessing::Array::filled(0u64, 3).unwrap();
    /// assert_eq!(a.to_vec(), vec![0, 0, 0]);
    /// ```
    pub fn filled(value: T, len: usize) -> Result<Array<T>, MpError> {
        Array::new(&vec![value; len])
    }

    /// The number of elements.
    ///
    /// ```
    /// let a = conclab::multiprocessing::Array::new(&[1u8; 5]).unwrap();
    /// assert_eq!(a.len(), 5);
    /// ```
    pub fn len(&self) -> usize {
        self.block.len()
    }

    /// Whether the array has no elements.
    ///
    /// ```
    /// let a = conclab::multiprocessing::Array::<i32>::new(&[]).unwrap();
    /// assert!(a.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One element under the lock (Python's `arr[i]`); `None` past the end.
    ///
    /// ```
    /// let a = conclab::multiprocessing::Array::new(&[3, 4]).unwrap();
    /// assert_eq!(a.get(1), Some(4));
    /// assert_eq!(a.get(2), None);
    /// ```
    pub fn get(&self, index: usize) -> Option<T> {
        self.get_lock().get(index).copied()
    }

    /// Sets one element under the lock (Python's `arr[i] = x`).
    ///
    /// ```
    /// use conclab::multiprocessing::{Array, MpError};
    /// let a = Array::new(&[0, 0]).unwrap();
    /// a.set(1, 9).unwrap();
    /// assert_eq!(a.to_vec(), vec![0, 9]);
    /// assert_eq!(a.set(5, 1), Err(MpError::IndexOutOfRange { index: 5, len: 2 }));
    /// ```
    pub fn set(&self, index: usize, value: T) -> Result<(), MpError> {
        let mut guard = self.get_lock();
        let len = guard.len();
        match guard.get_mut(index) {
            Some(slot) => {
                *slot = value;
                Ok(())
            }
            None => Err(MpError::IndexOutOfRange { index, len }),
        }
    }

    /// A copy of all elements (Python's `arr[:]`).
    ///
    /// ```
    /// let a = conclab::multiprocessing::Array::new(&['a', 'b']).unwrap();
    /// assert_eq!(a.to_vec(), vec!['a', 'b']);
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        self.get_lock().to_vec()
    }

    /// Takes the process-shared lock; the guard derefs to the whole slice.
    ///
    /// ```
    /// let a = conclab::multiprocessing::Array::new(&[1, 2, 3]).unwrap();
    /// a.get_lock().reverse();
    /// assert_eq!(a.to_vec(), vec![3, 2, 1]);
    /// ```
    pub fn get_lock(&self) -> ArrayGuard<'_, T> {
        ArrayGuard {
            inner: self.block.lock(),
        }
    }
}

/// The locked elements of an [`Array`]; unlocks when dropped.
///
/// ```
/// let a = conclab::multiprocessing::Array::new(&[5, 6]).unwrap();
/// let g = a.get_lock();
/// assert_eq!(g.iter().sum::<i32>(), 11);
/// ```
#[must_use = "the array is unlocked again as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T: Pod> {
    inner: BlockGuard<'a, T>,
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.inner.slice()
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.inner.slice_mut()
    }
}

/// Python's `multiprocessing.Lock`: a lock that works across forked processes.
///
/// A guard instead of `release()`; if a process dies holding it, the next `lock` gets it
/// back instead of hanging. A clone is another handle to the same lock.
///
/// ```
/// use conclab::multiprocessing::{Lock, Process};
///
/// let lock = Lock::new().unwrap();
/// let guard = lock.lock();
/// let child = Process::spawn(|| {
///     let _g = lock.lock(); // waits until the parent lets go
///     "got it".to_string()
/// })
/// .unwrap();
/// std::thread::sleep(std::time::Duration::from_millis(20));
/// drop(guard);
/// assert_eq!(child.join().unwrap(), "got it");
/// ```
#[derive(Clone)]
pub struct Lock {
    block: Arc<Block<u8>>,
}

impl std::fmt::Debug for Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lock")
    }
}

impl Lock {
    /// Maps a new unlocked process-shared lock.
    ///
    /// ```
    /// let lock = conclab::multiprocessing::Lock::new().unwrap();
    /// drop(lock.lock());
    /// ```
    pub fn new() -> Result<Lock, MpError> {
        Ok(Lock {
            block: Arc::new(Block::new(&[])?),
        })
    }

    /// Blocks until the lock is free and takes it; released when the guard drops.
    ///
    /// ```
    /// let lock = conclab::multiprocessing::Lock::new().unwrap();
    /// let _guard = lock.lock();
    /// ```
    pub fn lock(&self) -> LockGuard<'_> {
        self.block.header().lock.lock();
        LockGuard {
            lock: self,
            _not_send: PhantomData,
        }
    }
}

/// Holds a [`Lock`]; unlocks when dropped.
///
/// ```
/// let lock = conclab::multiprocessing::Lock::new().unwrap();
/// let guard: conclab::multiprocessing::LockGuard<'_> = lock.lock();
/// drop(guard);
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    _not_send: PhantomData<*const ()>,
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.block.header().lock.unlock();
    }
}
