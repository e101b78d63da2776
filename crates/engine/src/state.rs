//! An open engine: the user's directories, the state database, the image store and the
//! storage driver, which every verb works on.

use crate::db::Db;
use crate::storage::Driver;
use crate::{Dirs, IoContext, Result};
use cove_image::Store;

/// An open engine: directories, database, image store and the storage driver in use.
pub struct Engine {
    pub dirs: Dirs,
    pub db: Db,
    pub store: Store,
    pub driver: Driver,
}

impl Engine {
    /// Opens state. Rootless callers must already be inside the user namespace.
    pub fn open(dirs: Dirs) -> Result<Engine> {
        let db = Db::open(&dirs.db_path())?;
        let store = Store::open(&dirs.storage())?;
        let driver = crate::storage::storage_driver(&dirs);
        std::fs::create_dir_all(dirs.containers()).ctx(|| "create containers dir".into())?;
        Ok(Engine { dirs, db, store, driver })
    }

    pub fn unpack_options(&self) -> cove_image::UnpackOptions {
        crate::storage::unpack_options(&self.dirs)
    }
}
