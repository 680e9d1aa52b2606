//! vmount-backend-fuse (being written)
