//! The `images`, `tags` and `layer_blobs` tables: every SQL statement about images.

use super::{now_rfc3339, Db};
use crate::Result;
use rusqlite::params;

/// An image to record ([`Db::record_image`]).
pub struct NewImage<'a> {
    pub id: &'a str,
    /// The image config as JSON.
    pub config: &'a str,
    pub diff_ids: &'a [String],
    pub size: i64,
    pub created: &'a str,
    pub digest: Option<&'a str>,
    /// The stored blob of each layer (same order as `diff_ids`), where kept.
    pub layer_blobs: &'a [Option<String>],
}

impl Db {
    /// At most two image ids starting with `prefix` (`sha256:…`; two: ambiguous).
    pub fn image_ids_by_prefix(&self, prefix: &str) -> Result<Vec<String>> {
        let mut st = self.conn.prepare("SELECT id FROM images WHERE id LIKE ?1 || '%' LIMIT 2")?;
        let ids = st.query_map([prefix], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(ids)
    }

    /// Records an image (kept as is when known), its tags (moving a tag that pointed
    /// elsewhere, as Docker does) and its layer blobs, in one transaction.
    pub fn record_image(&mut self, img: &NewImage<'_>, tags: &[String]) -> Result<()> {
        let diff = serde_json::to_string(img.diff_ids).unwrap_or_else(|_| "[]".into());
        self.write(|tx| {
            tx.0.execute(
                "INSERT INTO images (id, config, diff_ids, size, created, added, digest) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(id) DO NOTHING",
                params![img.id, img.config, diff, img.size, img.created, now_rfc3339(), img.digest],
            )?;
            for t in tags {
                tx.tag(t, img.id)?;
            }
            for (d, b) in img.diff_ids.iter().zip(img.layer_blobs) {
                if let Some(b) = b {
                    tx.0.execute("INSERT INTO layer_blobs (image_id, diff_id, blob) VALUES (?1, ?2, ?3) ON CONFLICT DO UPDATE SET blob = excluded.blob", params![img.id, d, b])?;
                }
            }
            Ok(())
        })
    }

    /// Points tag `name` at image `id`.
    pub fn tag_image(&mut self, name: &str, id: &str) -> Result<()> {
        self.write(|tx| tx.tag(name, id))
    }

    pub fn untag(&mut self, name: &str) -> Result<()> {
        self.write(|tx| {
            tx.0.execute("DELETE FROM tags WHERE name = ?1", [name])?;
            Ok(())
        })
    }

    /// Deletes an image with its tags and layer-blob records (the blobs are the store's).
    pub fn delete_image(&mut self, id: &str) -> Result<()> {
        self.write(|tx| {
            tx.0.execute("DELETE FROM tags WHERE image_id = ?1", [id])?;
            tx.0.execute("DELETE FROM images WHERE id = ?1", [id])?;
            tx.0.execute("DELETE FROM layer_blobs WHERE image_id = ?1", [id])?;
            Ok(())
        })
    }

    /// The stored blob of each layer of an image (same order as `diff_ids`), where kept.
    pub fn layer_blobs(&self, image_id: &str, diff_ids: &[String]) -> Result<Vec<Option<String>>> {
        let mut st = self.conn.prepare("SELECT blob FROM layer_blobs WHERE image_id = ?1 AND diff_id = ?2")?;
        let mut out = vec![];
        for d in diff_ids {
            out.push(st.query_row(params![image_id, d], |r| r.get::<_, String>(0)).ok());
        }
        Ok(out)
    }

    /// Every layer blob some image keeps.
    pub fn all_layer_blobs(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare("SELECT blob FROM layer_blobs")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?;
        Ok(rows)
    }
}

impl super::Tx<'_> {
    fn tag(&self, name: &str, id: &str) -> Result<()> {
        self.0.execute(
            "INSERT INTO tags (name, image_id) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id",
            params![name, id],
        )?;
        Ok(())
    }
}
