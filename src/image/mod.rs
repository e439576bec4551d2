//! Images: references, registry configuration and client, the content store, layer unpacking
//! and the index of pulled images.
