//! memfs: placeholder being written.
