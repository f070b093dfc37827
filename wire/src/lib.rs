//! Wire protocol: postcard frames with a length prefix, a hard size limit and a versioned handshake.
