//! Masked and excluded columns under every naming rule SeaORM applies: `column_name`,
//! struct-level `rename_all` in each case style, `enum_name`, raw identifiers. The clear value
//! of a masked column must appear in no log row, whatever SeaORM calls the column.

#![allow(unreachable_pub)]

mod common;

use common::{TestDb, all_logs, create_table};
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, IdenStatic, IntoActiveModel};
use sea_orm_audit::{Auditable, FILTERED};

const CLEAR: &str = "clear-secret-value";

/// An entity with a masked `password_hash`, an excluded `updated_at`, and a masked raw
/// identifier `r#type`, in a table named after the module, columns renamed by `$rename`.
macro_rules! renamed {
    ($module:ident, $rename:literal) => {
        mod $module {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
            #[sea_orm(table_name = $rename, rename_all = $rename)]
            #[audit(mask(password_hash, r#type), exclude(updated_at))]
            pub struct Model {
                #[sea_orm(primary_key)]
                pub id: i32,
                pub user_name: String,
                pub password_hash: String,
                pub r#type: String,
                pub updated_at: i32,
            }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            sea_orm_audit::impl_audited_behavior!();
        }
    };
}

renamed!(camel, "camelCase");
renamed!(pascal, "PascalCase");
renamed!(snake, "snake_case");
renamed!(kebab, "kebab-case");
renamed!(screaming_kebab, "SCREAMING-KEBAB-CASE");
renamed!(shouty, "SCREAMING_SNAKE_CASE");
renamed!(title, "title_case");
renamed!(mixed, "mixed_case");
renamed!(lower, "lowercase");
renamed!(upper, "UPPERCASE");

/// `column_name` and `enum_name` on fields, a field-level mask, and an ignored field.
mod explicit {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, sea_orm_audit::Auditable)]
    #[sea_orm(table_name = "explicit_names")]
    #[audit(mask(pin), exclude(touched))]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[sea_orm(column_name = "pwd_digest")]
        #[audit(mask)]
        pub password_hash: String,
        #[sea_orm(column_name = "PIN-code", enum_name = "Pin")]
        pub pin: String,
        #[sea_orm(column_name = "touched_at")]
        pub touched: i32,
        #[sea_orm(ignore)]
        pub scratch: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    sea_orm_audit::impl_audited_behavior!();
}

/// Inserts and updates one row of `$module` and checks the log: masked keys carry FILTERED
/// under SeaORM's own column names, the clear value is nowhere, the excluded column is absent.
macro_rules! check_renamed {
    ($t:expr, $module:ident) => {{
        use $module as m;
        assert_eq!(
            <m::Model as Auditable>::masked(),
            [m::Column::PasswordHash.as_str(), m::Column::Type.as_str()]
        );
        assert_eq!(
            <m::Model as Auditable>::excluded(),
            [m::Column::UpdatedAt.as_str()]
        );
        create_table(&$t.db, m::Entity).await;
        let row = m::ActiveModel {
            id: Set(1),
            user_name: Set("ann".into()),
            password_hash: Set(CLEAR.into()),
            r#type: Set(CLEAR.into()),
            updated_at: Set(1),
        }
        .insert(&$t.db)
        .await
        .unwrap();
        let mut am = row.into_active_model();
        am.password_hash = Set(format!("{CLEAR}-2"));
        am.r#type = Set(format!("{CLEAR}-2"));
        am.updated_at = Set(2);
        am.update(&$t.db).await.unwrap();
        let entity_type = <m::Model as Auditable>::entity_type();
        let logs: Vec<_> = all_logs(&$t.db)
            .await
            .into_iter()
            .filter(|l| l.entity_type == entity_type)
            .collect();
        assert_eq!(logs.len(), 2, "{entity_type}: an insert and an update");
        for log in &logs {
            let text = log.changes.as_ref().unwrap().to_string();
            assert!(
                !text.contains(CLEAR),
                "{entity_type}: clear value logged: {text}"
            );
            assert!(
                !text.contains(m::Column::UpdatedAt.as_str()),
                "{entity_type}: excluded column logged: {text}"
            );
            let new = &log.changes.as_ref().unwrap()["new_value"];
            for col in [m::Column::PasswordHash, m::Column::Type] {
                assert_eq!(new[col.as_str()], FILTERED, "{entity_type}: {text}");
            }
        }
    }};
}

#[tokio::test]
async fn masks_follow_every_rename_all_style() {
    let t = TestDb::new().await;
    // The styles really rename: otherwise this test would prove nothing.
    assert_eq!(camel::Column::PasswordHash.as_str(), "passwordHash");
    assert_eq!(shouty::Column::PasswordHash.as_str(), "PASSWORD_HASH");
    assert_eq!(kebab::Column::PasswordHash.as_str(), "password-hash");
    check_renamed!(t, camel);
    check_renamed!(t, pascal);
    check_renamed!(t, snake);
    check_renamed!(t, kebab);
    check_renamed!(t, screaming_kebab);
    check_renamed!(t, shouty);
    check_renamed!(t, title);
    check_renamed!(t, mixed);
    check_renamed!(t, lower);
    check_renamed!(t, upper);
    t.finish().await;
}

#[tokio::test]
async fn masks_follow_column_name_and_enum_name() {
    let t = TestDb::new().await;
    assert_eq!(
        <explicit::Model as Auditable>::masked(),
        ["PIN-code", "pwd_digest"]
    );
    assert_eq!(<explicit::Model as Auditable>::excluded(), ["touched_at"]);
    create_table(&t.db, explicit::Entity).await;
    explicit::ActiveModel {
        id: Set(1),
        password_hash: Set(CLEAR.into()),
        pin: Set(CLEAR.into()),
        touched: Set(1),
    }
    .insert(&t.db)
    .await
    .unwrap();
    let logs = all_logs(&t.db).await;
    let text = logs[0].changes.as_ref().unwrap().to_string();
    assert!(!text.contains(CLEAR), "{text}");
    assert!(!text.contains("touched_at"), "{text}");
    let new = &logs[0].changes.as_ref().unwrap()["new_value"];
    assert_eq!(new["pwd_digest"], FILTERED);
    assert_eq!(new["PIN-code"], FILTERED);
    t.finish().await;
}
