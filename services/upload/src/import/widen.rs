//! Types that adapt while the file streams, for a table this import creates: `create=true`
//! types its columns from the first rows, and a later value those types do not hold widens its
//! column — integer → numeric → text, date → timestamp → text, anything else → text — before
//! its row is sent, instead of being rejected. The `ALTER TABLE` runs at once (on the staging
//! table too, for atomic and replace), is recorded in the import's `read_as.widened`, and the
//! rows sent before fit the wider type as they fit the narrower one.

use csv_async::ByteRecord;
use csvbus_shared::catalog::{quote_ident, Column, TableName};
use csvbus_shared::imports;
use csvbus_shared::infer::SqlType;
use csvbus_shared::modes::staging_table;
use uuid::Uuid;

use crate::error::ApiError;
use crate::rows::{Header, ValueOptions};
use crate::App;

/// The columns of a table the import created, and what widened them.
pub struct Widening {
    table: TableName,
    /// atomic / replace: the staging table, widened alike.
    staging: Option<String>,
    /// Per written column, its type now.
    types: Vec<Option<SqlType>>,
    /// The statements run, in order.
    pub done: Vec<String>,
}

impl Widening {
    /// For the columns of `header` in the created table `columns`; those of `given` (types the
    /// user gave, `types=`) keep their type.
    pub fn new(
        table: &TableName,
        staged: Option<Uuid>,
        header: &Header,
        (columns, given): (&[Column], &[String]),
    ) -> Self {
        let types = header
            .columns
            .iter()
            .map(|c| {
                let column = columns
                    .iter()
                    .find(|t| t.name == *c && !given.contains(c))?;
                SqlType::from_sql(&column.type_name)
            })
            .collect();
        Self {
            table: table.clone(),
            staging: staged.map(staging_table),
            types,
            done: Vec::new(),
        }
    }

    /// Widens the columns whose type does not hold `record`'s value (empty and NULL values
    /// hold in any); `header` then reads the column as its new type.
    pub async fn fit(
        &mut self,
        app: &App,
        id: Uuid,
        header: &mut Header,
        record: &ByteRecord,
        opts: &ValueOptions,
    ) -> Result<(), ApiError> {
        let null = opts.null.as_deref().unwrap_or("");
        // Collected only when a value misfits: no allocation for the rows that fit.
        let misfits: Vec<(usize, SqlType)> = header
            .written_values(record)
            .filter_map(|(n, raw)| {
                let (Some(now), Ok(v)) = (self.types.get(n)?.as_ref(), std::str::from_utf8(raw))
                else {
                    return None;
                };
                let holds =
                    v.trim().is_empty() || v == null || now.reads(v, opts.dates, opts.decimal);
                (!holds).then(|| (n, now.widened_for(v, opts.dates, opts.decimal)))
            })
            .collect();
        for (n, wider) in misfits {
            let column = header.columns[n].clone();
            self.alter(app, id, &column, wider).await?;
            self.types[n] = Some(wider);
            header.column_is(n, wider.sql());
        }
        Ok(())
    }

    async fn alter(
        &mut self,
        app: &App,
        id: Uuid,
        column: &str,
        wider: SqlType,
    ) -> Result<(), ApiError> {
        let (c, t) = (quote_ident(column), wider.sql());
        let alter = |table: &str| {
            format!("ALTER TABLE {table} ALTER COLUMN {c} TYPE {t} USING {c}::text::{t}")
        };
        let statement = alter(&self.table.quoted());
        let mut tx = app.pool.begin().await?;
        sqlx::query(&statement).execute(&mut *tx).await?;
        if let Some(staging) = &self.staging {
            sqlx::query(&alter(staging)).execute(&mut *tx).await?;
        }
        imports::upload::record_widened(&mut tx, id, &statement).await?;
        tx.commit().await?;
        tracing::info!(import_id = %id, column, to = t, "column widened for a later value");
        self.done.push(statement);
        Ok(())
    }
}
