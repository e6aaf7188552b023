//! What a cached function returns, and which part of it is cached: a plain value as it is,
//! the `Ok` of a `Result`.

/// A cached function's output `Self`, whose cached part is `V`. The generated code calls one
/// `call` and one `refresh` for every function; this trait tells plain and `Result` outputs
/// apart.
pub trait Output<V>: Sized {
    /// The value to cache, or the output itself when it is not cached (an `Err`).
    fn cached(self) -> Result<V, Self>;

    /// The output that answers with a cached value.
    fn from_cached(value: V) -> Self;
}

impl<V> Output<V> for V {
    #[inline]
    fn cached(self) -> Result<V, V> {
        Ok(self)
    }

    #[inline]
    fn from_cached(value: V) -> V {
        value
    }
}

impl<V, E> Output<V> for Result<V, E> {
    #[inline]
    fn cached(self) -> Result<V, Self> {
        self.map_err(Err)
    }

    #[inline]
    fn from_cached(value: V) -> Self {
        Ok(value)
    }
}
