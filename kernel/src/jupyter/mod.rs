//! The Jupyter side shared by the kernel and the client: the wire format of messages,
//! kernelspecs on disk, and `.ipynb` files.

pub(crate) mod kernelspec;
pub(crate) mod notebook;
pub mod wire;
