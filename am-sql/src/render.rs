//! Plans to SQL: turns a plan node's [`SetExpr`] (and the [`Expr`] conditions inside it) into
//! one sea-query `SELECT user_id ...` statement, once, for every engine.
//!
//! Aggregates come from one of two places ([`Aggregates`]):
//!
//! - **standalone**: each distinct [`Scope`] becomes a `GROUP BY user_id` subquery over its
//!   transactions, LEFT JOINed to `users`. The statement is self-contained; it is what the
//!   catalog stores as `sql_query` and what explain and preview show.
//! - **shared**: a refresh first fills one scratch table per (source, window) with the
//!   per-user aggregates of every scope the plan uses over it (one scan of the transactions,
//!   each scope's filter applied with `CASE`, users without a profile left out), and every
//!   rule then only reads those tables. A rule that reads no profile field and is false for
//!   users without transactions reads its aggregate table alone, without joining `users`.
//!   The rules that must read `users` (a profile field, or users without transactions) read
//!   one per-user table instead, built once per refresh from `users` and those tables.
//!
//! Semantics mirror `am_core::evaluate` exactly: money in integer cents
//! (`CAST(ROUND(amount * 100) AS INTEGER)`), SQL aggregate semantics with `COALESCE` for the
//! aggregates that are 0 for a user without transactions, the average compared exactly as
//! `sum op v * n`, every test on null false, and `NOT` rendered as `NOT COALESCE(x, FALSE)` so the
//! complement of an unknown is true, as two-valued logic wants.
//!
//! Column and table names come only from the field catalog and our own schema; every user
//! value is a bound parameter (or inlined by `to_string` for the stored, pasteable query).

use std::collections::{BTreeMap, BTreeSet};

use am_core::expr::{CmpOp, Expr, Pred, Scope, Source, Test, Timestamp, Value, Window};
use am_core::field::{Field, ValueType};
use am_core::plan::SetExpr;
use am_core::rule::RuleId;

use crate::backend::Dialect;
use crate::catalog::segment_table_name as segment_table;
use chrono::Duration;
use sea_query::{
    Alias, ColumnDef, ColumnType, Condition, ExprTrait, Func, InsertStatement, IntoIden,
    IntoTableRef, Query, SelectStatement, Table, TableCreateStatement, TableRef, UnionType,
};

type SqlExpr = sea_query::Expr;

/// The table users' profiles live in.
pub const USERS: &str = "users";
/// The credit-card transactions table.
pub const CREDIT_CARD: &str = "credit_card_transactions";
/// The UPI transactions table.
pub const UPI: &str = "upi_transactions";
/// The one column every segment query returns.
pub const USER_ID: &str = "user_id";

/// One per-user aggregate column, computed per scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AggColumn {
    /// `SUM` of amounts in cents (null when no amount).
    TotalCents,
    /// `COUNT(*)` of transactions in scope.
    TxCount,
    /// `COUNT(amount)`: the divisor of the average.
    AmountCount,
    MinCents,
    MaxCents,
    FirstDate,
    LastDate,
    DistinctCategories,
}

impl AggColumn {
    pub fn name(self) -> &'static str {
        match self {
            AggColumn::TotalCents => "total_cents",
            AggColumn::TxCount => "tx_count",
            AggColumn::AmountCount => "amount_count",
            AggColumn::MinCents => "min_cents",
            AggColumn::MaxCents => "max_cents",
            AggColumn::FirstDate => "first_date",
            AggColumn::LastDate => "last_date",
            AggColumn::DistinctCategories => "distinct_categories",
        }
    }

    /// The column's declared type: a time for dates, a 64-bit integer for the rest.
    fn column_type(self, d: Dialect) -> ColumnType {
        match self {
            AggColumn::FirstDate | AggColumn::LastDate => d.time_column(),
            _ => ColumnType::BigInteger,
        }
    }

    /// The columns an aggregate field is computed from.
    fn for_field(field: Field) -> &'static [AggColumn] {
        match field {
            Field::TotalSpend => &[AggColumn::TotalCents],
            Field::TransactionCount => &[AggColumn::TxCount],
            Field::AvgTransactionAmount => &[AggColumn::TotalCents, AggColumn::AmountCount],
            Field::MaxTransactionAmount => &[AggColumn::MaxCents],
            Field::MinTransactionAmount => &[AggColumn::MinCents],
            Field::FirstTransactionDate => &[AggColumn::FirstDate],
            Field::LastTransactionDate | Field::DaysSinceLastTransaction => &[AggColumn::LastDate],
            Field::DistinctCategories => &[AggColumn::DistinctCategories],
            _ => &[],
        }
    }
}

/// The aggregate columns each scope needs, over a whole expression or plan.
pub type AggregateNeeds = BTreeMap<Scope, BTreeSet<AggColumn>>;

/// Adds the aggregates a condition reads to `needs`.
pub fn collect_expr_needs(e: &Expr, needs: &mut AggregateNeeds) {
    match e {
        Expr::True | Expr::False | Expr::Pred(Pred::Profile { .. } | Pred::Tx { .. }) => {}
        Expr::All(xs) | Expr::Any(xs) => xs.iter().for_each(|x| collect_expr_needs(x, needs)),
        Expr::Not(x) => collect_expr_needs(x, needs),
        Expr::Pred(Pred::Aggregate { field, scope, .. }) => {
            let cols = AggColumn::for_field(*field);
            if !cols.is_empty() {
                needs
                    .entry(scope.clone())
                    .or_default()
                    .extend(cols.iter().copied());
            }
        }
    }
}

/// Adds the aggregates a set expression reads to `needs`.
pub fn collect_set_needs(s: &SetExpr, needs: &mut AggregateNeeds) {
    match s {
        SetExpr::AllUsers | SetExpr::Segment(_) => {}
        SetExpr::Intersect(xs) | SetExpr::Union(xs) => {
            xs.iter().for_each(|x| collect_set_needs(x, needs));
        }
        SetExpr::Difference(first, others) => {
            collect_set_needs(first, needs);
            others.iter().for_each(|x| collect_set_needs(x, needs));
        }
        SetExpr::Filter(inner, e) => {
            collect_set_needs(inner, needs);
            collect_expr_needs(e, needs);
        }
    }
}

/// The segments a set expression reads.
pub fn segments_read(s: &SetExpr, out: &mut BTreeSet<RuleId>) {
    match s {
        SetExpr::AllUsers => {}
        SetExpr::Segment(id) => {
            out.insert(*id);
        }
        SetExpr::Intersect(xs) | SetExpr::Union(xs) => {
            xs.iter().for_each(|x| segments_read(x, out))
        }
        SetExpr::Difference(first, others) => {
            segments_read(first, out);
            others.iter().for_each(|x| segments_read(x, out));
        }
        SetExpr::Filter(inner, _) => segments_read(inner, out),
    }
}

/// One scratch table of shared aggregates: every scope of one (source, window).
#[derive(Debug, Clone)]
pub struct SharedTable {
    pub name: String,
    pub source: Source,
    pub window: Window,
    /// Each scope with its column prefix and the columns it needs.
    pub scopes: Vec<(Scope, String, BTreeSet<AggColumn>)>,
}

/// The shared aggregate tables of one refresh and where each scope's columns are.
#[derive(Debug, Clone)]
pub struct AggregateLayout {
    /// The engine the tables are built on.
    pub dialect: Dialect,
    pub tables: Vec<SharedTable>,
    by_scope: BTreeMap<Scope, (usize, String)>,
    /// The per-user table the rules that need `users` read instead, if the plan has such
    /// rules (see [`AggregateLayout::plan_users_table`]).
    pub users_table: Option<UsersTable>,
    /// A table of user ids every statement over this layout is restricted to: the users an
    /// incremental refresh re-evaluates. The aggregate tables then hold those users only.
    pub only: Option<String>,
}

/// A scratch table with one row per user in `users`: the profile columns the plan's rules
/// read and the columns of the shared aggregate tables they read (null for a user without a
/// row there, as a `LEFT JOIN` gives), so such a rule scans one table in `user_id` order
/// instead of looking every user up in `users` and the aggregates.
#[derive(Debug, Clone)]
pub struct UsersTable {
    pub name: String,
    /// The profile fields (columns of `users`) it copies.
    pub profile: BTreeSet<Field>,
    /// The shared aggregate columns it copies, by scope: only those such rules read.
    pub needs: AggregateNeeds,
}

/// Column `<prefix><column>` of shared table `agg_<i>` is `agg_<i>_<prefix><column>` in the
/// users table.
fn users_table_prefix(table: &SharedTable, prefix: &str) -> String {
    format!("{}_{prefix}", table.name)
}

impl AggregateLayout {
    /// Groups the scopes by (source, window), one table `agg_<n>` per group, so the
    /// transactions of a window are scanned once however many rules and filters read them.
    pub fn new(dialect: Dialect, needs: &AggregateNeeds) -> Self {
        type Group = Vec<(Scope, BTreeSet<AggColumn>)>;
        let mut groups: BTreeMap<(Source, Window), Group> = BTreeMap::new();
        for (scope, cols) in needs {
            groups
                .entry((scope.source, scope.window))
                .or_default()
                .push((scope.clone(), cols.clone()));
        }
        let mut layout = AggregateLayout {
            dialect,
            tables: Vec::new(),
            by_scope: BTreeMap::new(),
            users_table: None,
            only: None,
        };
        for (n, ((source, window), scopes)) in groups.into_iter().enumerate() {
            let mut table = SharedTable {
                name: format!("agg_{n}"),
                source,
                window,
                scopes: Vec::new(),
            };
            for (k, (scope, cols)) in scopes.into_iter().enumerate() {
                let prefix = format!("s{k}_");
                layout.by_scope.insert(scope.clone(), (n, prefix.clone()));
                table.scopes.push((scope, prefix, cols));
            }
            layout.tables.push(table);
        }
        layout
    }

    /// The layout restricted to the users in table `only` (see [`AggregateLayout::only`]); its
    /// tables are named after it, so they live beside an unrestricted layout's.
    pub fn restricted_to(mut self, only: &str) -> Self {
        for table in &mut self.tables {
            table.name = format!("{only}_{}", table.name);
        }
        self.only = Some(only.to_owned());
        self
    }

    /// `CREATE TEMPORARY TABLE agg_<n> (user_id INTEGER PRIMARY KEY, <columns>)`.
    pub fn create_statement(&self, table: &SharedTable) -> TableCreateStatement {
        let mut create = Table::create();
        create
            .table(Alias::new(table.name.clone()))
            .temporary()
            .col(self.dialect.key_column(USER_ID));
        for (_, prefix, cols) in &table.scopes {
            for col in cols {
                create.col(ColumnDef::new_with_type(
                    Alias::new(format!("{prefix}{}", col.name())),
                    col.column_type(self.dialect),
                ));
            }
        }
        create
    }

    /// The statements that fill `agg_<n>`: `INSERT INTO agg_<n> SELECT user_id, <aggregates>
    /// FROM <scan> GROUP BY user_id HAVING user_id IN (SELECT user_id FROM users)`, one scan
    /// of the window's transactions; each scope's filter becomes a `CASE` inside its
    /// aggregates. Users with transactions but no profile are left out, so the table's rows
    /// are members' candidates on their own.
    ///
    /// On SQLite, both sources are aggregated one after the other, each in the order of its
    /// covering index, the second merged into the first's rows (`ON CONFLICT DO UPDATE`):
    /// grouping their `UNION ALL` would sort every transaction of the window. A distinct
    /// count cannot be merged from two partial counts, so a table with one keeps the union.
    pub fn fill_statements(&self, table: &SharedTable, as_of: Timestamp) -> Vec<InsertStatement> {
        let mergeable = !table
            .scopes
            .iter()
            .any(|(_, _, cols)| cols.contains(&AggColumn::DistinctCategories));
        if self.dialect == Dialect::Sqlite && table.source == Source::All && mergeable {
            vec![
                self.fill_from(table, Source::CreditCard, as_of, false),
                self.fill_from(table, Source::Upi, as_of, true),
            ]
        } else {
            vec![self.fill_from(table, table.source, as_of, false)]
        }
    }

    /// Fills `table` from the transactions of `source`; with `merge`, rows of users already in
    /// the table are combined with theirs instead of inserted.
    fn fill_from(
        &self,
        table: &SharedTable,
        source: Source,
        as_of: Timestamp,
        merge: bool,
    ) -> InsertStatement {
        let mut select = Query::select();
        select.column((SCAN, USER_ID));
        let mut columns = vec![Alias::new(USER_ID)];
        let mut merged = Vec::new();
        let mut any_unfiltered = false;
        let mut filters = Vec::new();
        // A lone scope's filter is the scan's `WHERE` (below): no row needs its `CASE` too.
        let lone = table.scopes.len() == 1;
        for (scope, prefix, cols) in &table.scopes {
            let guard = scope.filter.as_deref();
            match guard {
                Some(f) => filters.push(f),
                None => any_unfiltered = true,
            }
            for col in cols {
                let name = format!("{prefix}{}", col.name());
                select.expr_as(
                    aggregate_column(self.dialect, *col, guard.filter(|_| !lone)),
                    Alias::new(name.clone()),
                );
                merged.push((
                    Alias::new(name.clone()),
                    merged_column(*col, &table.name, &name),
                ));
                columns.push(Alias::new(name));
            }
        }
        // When every scope filters, rows no filter keeps cannot change any aggregate.
        let prune =
            (!any_unfiltered).then(|| any_of(filters.iter().map(|f| (*f).clone()).collect()));
        let mut scan_columns = BTreeSet::new();
        for (scope, _, cols) in &table.scopes {
            scan_columns.extend(cols.iter().filter_map(|c| scan_column(*c)));
            if let Some(f) = &scope.filter {
                filter_columns(f, &mut scan_columns);
            }
        }
        let scan = scan_statement(
            self.dialect,
            source,
            &table.window,
            prune.as_ref(),
            &scan_columns,
            as_of,
            self.only.as_deref(),
        );
        // Only users with a profile: a rule may then read its members from this table alone
        // (`IN` on the rowid is a lookup per user, not per transaction).
        let mut profiles = Query::select();
        profiles.column(USER_ID).from(USERS);
        select
            .from_subquery(scan, SCAN)
            .group_by_col((SCAN, USER_ID))
            .and_having(SqlExpr::col((SCAN, USER_ID)).in_subquery(profiles));
        let mut insert = Query::insert();
        insert
            .into_table(Alias::new(table.name.clone()))
            .columns(columns);
        // The select has exactly the listed columns, so this cannot fail.
        let _ = insert.select_from(select);
        if merge {
            insert.on_conflict(
                sea_query::OnConflict::column(USER_ID)
                    .values(merged)
                    .to_owned(),
            );
        }
        insert
    }

    /// Decides whether the refresh builds the users table: when at least one filter of `sets`
    /// reads shared aggregates and must also read `users` (a profile field, or users without
    /// transactions). It copies the profile fields and aggregate columns such filters read.
    pub fn plan_users_table<'s>(
        &mut self,
        sets: impl IntoIterator<Item = &'s SetExpr>,
        as_of: Timestamp,
    ) {
        let mut wanted = UsersTable {
            name: match &self.only {
                Some(only) => format!("{only}_agg_users"),
                None => "agg_users".to_owned(),
            },
            profile: BTreeSet::new(),
            needs: AggregateNeeds::new(),
        };
        for s in sets {
            self.users_filters(s, as_of, &mut wanted);
        }
        self.users_table = (!wanted.needs.is_empty()).then_some(wanted);
    }

    fn users_filters(&self, s: &SetExpr, as_of: Timestamp, wanted: &mut UsersTable) {
        match s {
            SetExpr::AllUsers | SetExpr::Segment(_) => {}
            SetExpr::Intersect(xs) | SetExpr::Union(xs) => {
                xs.iter().for_each(|x| self.users_filters(x, as_of, wanted));
            }
            SetExpr::Difference(first, others) => {
                self.users_filters(first, as_of, wanted);
                others
                    .iter()
                    .for_each(|x| self.users_filters(x, as_of, wanted));
            }
            SetExpr::Filter(inner, e) => {
                self.users_filters(inner, as_of, wanted);
                let mut needs = AggregateNeeds::new();
                collect_expr_needs(e, &mut needs);
                let shared = needs.keys().all(|s| self.locate(s).is_some());
                if shared
                    && !needs.is_empty()
                    && self.aggregates_only_table(e, &needs, as_of).is_none()
                {
                    for (scope, cols) in needs {
                        wanted.needs.entry(scope).or_default().extend(cols);
                    }
                    profile_fields(e, &mut wanted.profile);
                }
            }
        }
    }

    /// The shared table a condition can be read from alone (see [`aggregates_only`]).
    fn aggregates_only_table(
        &self,
        e: &Expr,
        needs: &AggregateNeeds,
        as_of: Timestamp,
    ) -> Option<usize> {
        if reads_profile(e) {
            return None;
        }
        let mut tables = needs.keys().map(|s| self.locate(s).map(|(i, _)| i));
        let i = tables.next()??;
        if !tables.all(|t| t == Some(i)) {
            return None;
        }
        let absent = |s: &Scope| self.locate(s).is_some_and(|(j, _)| j == i);
        (when_absent(e, &absent, as_of) == Some(false)).then_some(i)
    }

    /// `CREATE TEMPORARY TABLE agg_users (user_id INTEGER PRIMARY KEY, <profile>,
    /// <aggregates>)`, each column declared with the type it has in the contract's schema.
    pub fn users_table_create(&self) -> Option<TableCreateStatement> {
        let users = self.users_table.as_ref()?;
        let mut create = Table::create();
        create
            .table(Alias::new(users.name.clone()))
            .temporary()
            .col(self.dialect.key_column(USER_ID));
        for (name, column_type) in self.users_table_columns(users) {
            create.col(ColumnDef::new_with_type(Alias::new(name), column_type));
        }
        Some(create)
    }

    /// `INSERT INTO agg_users SELECT users.user_id, users.<profile>, a<i>.<aggregates> FROM
    /// users LEFT JOIN agg_<i> AS a<i> .. ORDER BY users.user_id`: one pass over `users`, rows
    /// appended in key order.
    pub fn users_table_fill(&self) -> Option<InsertStatement> {
        let users = self.users_table.as_ref()?;
        let mut select = Query::select();
        select.column((USERS, USER_ID)).from(USERS);
        for field in users.profile.iter().filter(|f| f.name() != USER_ID) {
            select.column((USERS, field.name()));
        }
        let mut joined = BTreeSet::new();
        for (scope, cols) in &users.needs {
            let (i, prefix) = self.locate(scope)?;
            let alias = Alias::new(format!("a{i}"));
            for col in cols {
                select.column((alias.clone(), Alias::new(format!("{prefix}{}", col.name()))));
            }
            if joined.insert(i) {
                select.join_as(
                    sea_query::JoinType::LeftJoin,
                    Alias::new(self.tables[i].name.clone()),
                    alias.clone(),
                    SqlExpr::col((alias, USER_ID)).equals((USERS, USER_ID)),
                );
            }
        }
        if let Some(only) = &self.only {
            select.and_where(SqlExpr::col((USERS, USER_ID)).in_subquery(ids_in(only)));
        }
        select.order_by((USERS, USER_ID), sea_query::Order::Asc);
        let mut insert = Query::insert();
        insert.into_table(Alias::new(users.name.clone())).columns(
            std::iter::once(USER_ID.to_owned())
                .chain(self.users_table_columns(users).into_iter().map(|(n, _)| n))
                .map(Alias::new),
        );
        // The select lists exactly these columns, in this order.
        let _ = insert.select_from(select);
        Some(insert)
    }

    /// The users table's columns after `user_id` with their declared types: profile fields,
    /// then aggregate columns. The types are the contract's, so comparisons convert values as
    /// they do on `users`.
    fn users_table_columns(&self, users: &UsersTable) -> Vec<(String, ColumnType)> {
        let mut columns: Vec<(String, ColumnType)> = users
            .profile
            .iter()
            .filter(|f| f.name() != USER_ID)
            .map(|f| {
                let column_type = match f.value_type() {
                    ValueType::Integer => ColumnType::BigInteger,
                    ValueType::Text => ColumnType::Text,
                    ValueType::Timestamp => self.dialect.time_column(),
                    ValueType::Money | ValueType::Location => ColumnType::Double,
                };
                (f.name().to_owned(), column_type)
            })
            .collect();
        for (scope, cols) in &users.needs {
            // Every scope of the table was located when it was planned.
            if let Some((i, prefix)) = self.locate(scope) {
                let wide = users_table_prefix(&self.tables[i], prefix);
                columns.extend(
                    cols.iter()
                        .map(|c| (format!("{wide}{}", c.name()), c.column_type(self.dialect))),
                );
            }
        }
        columns
    }

    /// Where a scope's aggregates are: the table index and column prefix.
    fn locate(&self, scope: &Scope) -> Option<(usize, &str)> {
        self.by_scope.get(scope).map(|(i, p)| (*i, p.as_str()))
    }
}

/// Where a rendered statement reads its aggregates from.
#[derive(Debug, Clone, Copy)]
pub enum Aggregates<'a> {
    /// A `GROUP BY` subquery per scope: self-contained, pasteable.
    Standalone,
    /// The refresh's shared scratch tables; a scope missing from the layout falls back to a
    /// subquery.
    Shared(&'a AggregateLayout),
}

/// Everything a statement depends on besides the plan itself.
#[derive(Debug, Clone, Copy)]
pub struct RenderContext<'a> {
    /// The engine the statement is for.
    pub dialect: Dialect,
    /// The run's as-of time: relative windows and `days_since_last_transaction` use it.
    pub as_of: Timestamp,
    pub aggregates: Aggregates<'a>,
    /// Drive the statement's filter from the set it narrows (a small one): each member is
    /// looked up in the aggregates, instead of every row of the aggregates being looked up in
    /// the set. Sets nested inside that set are rendered without it.
    pub base_first: bool,
}

const SCAN: &str = "t";
const BASE: &str = "b";

/// Renders a set expression to `SELECT user_id ...` returning its members once each.
pub fn render_set(s: &SetExpr, ctx: &RenderContext<'_>) -> SelectStatement {
    match s {
        SetExpr::AllUsers => members_of(USERS, ctx),
        SetExpr::Segment(id) => members_of(&segment_table(*id), ctx),
        SetExpr::Intersect(xs) => match xs.as_slice() {
            [] => render_set(&SetExpr::AllUsers, ctx),
            [one] => render_set(one, ctx),
            _ => compound(xs.iter(), UnionType::Intersect, ctx),
        },
        SetExpr::Union(xs) => match xs.as_slice() {
            [] => {
                let mut q = Query::select();
                q.column(USER_ID)
                    .from(USERS)
                    .and_where(SqlExpr::cust("FALSE"));
                q
            }
            [one] => render_set(one, ctx),
            _ => compound(xs.iter(), UnionType::Distinct, ctx),
        },
        SetExpr::Difference(first, others) => {
            if others.is_empty() {
                render_set(first, ctx)
            } else {
                compound(
                    std::iter::once(first.as_ref()).chain(others),
                    UnionType::Except,
                    ctx,
                )
            }
        }
        SetExpr::Filter(inner, e) => render_filter(inner, e, ctx),
    }
}

/// `SELECT user_id FROM <table>`, restricted as the context is.
fn members_of(table: &str, ctx: &RenderContext<'_>) -> SelectStatement {
    let mut q = Query::select();
    q.column((Alias::new(table), USER_ID))
        .from(Alias::new(table));
    if let Some(only) = restriction(ctx) {
        restrict(&mut q, table, only);
    }
    q
}

/// Joins the rows of `rows` to the user ids in `only`: a join lets the engine drive from the
/// few ids and look each up, where `IN (SELECT ..)` may first copy them for every statement.
fn restrict(q: &mut SelectStatement, rows: &str, only: &str) {
    const ONLY: &str = "r";
    q.join_as(
        sea_query::JoinType::InnerJoin,
        Alias::new(only),
        Alias::new(ONLY),
        SqlExpr::col((Alias::new(ONLY), USER_ID)).equals((Alias::new(rows), USER_ID)),
    );
}

/// The table of user ids the statement is restricted to, if any (see
/// [`AggregateLayout::only`]).
fn restriction<'a>(ctx: &RenderContext<'a>) -> Option<&'a str> {
    match ctx.aggregates {
        Aggregates::Shared(layout) => layout.only.as_deref(),
        Aggregates::Standalone => None,
    }
}

/// `SELECT user_id FROM <table>`.
fn ids_in(table: &str) -> SelectStatement {
    Query::select()
        .column(USER_ID)
        .from(Alias::new(table))
        .to_owned()
}

/// Renders a condition over all users (no dependencies, no reuse).
pub fn render_condition(e: &Expr, ctx: &RenderContext<'_>) -> SelectStatement {
    render_filter(&SetExpr::AllUsers, e, ctx)
}

/// `a OP b OP c` with every operand wrapped as `SELECT user_id FROM (..)`, so one chain
/// holds one operator only (SQLite and PostgreSQL disagree on mixed chains).
fn compound<'s>(
    mut xs: impl Iterator<Item = &'s SetExpr>,
    op: UnionType,
    ctx: &RenderContext<'_>,
) -> SelectStatement {
    let operand = |n: usize, x: &SetExpr| match x {
        SetExpr::Segment(id) => members_of(&segment_table(*id), ctx),
        SetExpr::AllUsers => members_of(USERS, ctx),
        _ => {
            let mut q = Query::select();
            q.column(USER_ID)
                .from_subquery(render_set(x, ctx), Alias::new(format!("s{n}")));
            q
        }
    };
    let Some(first) = xs.next() else {
        return render_set(&SetExpr::AllUsers, ctx);
    };
    let mut q = operand(0, first);
    for (n, x) in xs.enumerate() {
        q.union(op, operand(n + 1, x));
    }
    q
}

/// `SELECT users.user_id FROM users [JOIN base] LEFT JOIN <aggregates> WHERE <condition>`,
/// or, with shared aggregates, `SELECT a<i>.user_id FROM agg_<i> AS a<i> [JOIN base] WHERE
/// <condition>` when that one table decides membership (see [`aggregates_only`]).
fn render_filter(inner: &SetExpr, e: &Expr, ctx: &RenderContext<'_>) -> SelectStatement {
    let mut needs = AggregateNeeds::new();
    collect_expr_needs(e, &mut needs);
    if let Some(q) = aggregates_only(inner, e, &needs, ctx) {
        return q;
    }
    if let Some(q) = from_users_table(inner, e, &needs, ctx) {
        return q;
    }
    let mut q = Query::select();
    from_narrowed(&mut q, USERS, USERS, inner, ctx);
    // Each scope maps to (join alias, column prefix).
    let mut located: BTreeMap<Scope, (String, String)> = BTreeMap::new();
    let mut joined_tables: BTreeSet<usize> = BTreeSet::new();
    for (k, (scope, cols)) in needs.iter().enumerate() {
        let shared = match ctx.aggregates {
            Aggregates::Shared(layout) => layout.locate(scope),
            Aggregates::Standalone => None,
        };
        match (shared, ctx.aggregates) {
            (Some((i, prefix)), Aggregates::Shared(layout)) => {
                let alias = format!("a{i}");
                if joined_tables.insert(i) {
                    let absent = |s: &Scope| layout.locate(s).is_some_and(|(j, _)| j == i);
                    q.join_as(
                        join_type(e, &absent, ctx.as_of),
                        Alias::new(layout.tables[i].name.clone()),
                        Alias::new(alias.clone()),
                        SqlExpr::col((Alias::new(alias.clone()), USER_ID)).equals((USERS, USER_ID)),
                    );
                }
                located.insert(scope.clone(), (alias, prefix.to_owned()));
            }
            _ => {
                let alias = format!("x{k}");
                let absent = |s: &Scope| s == scope;
                q.join_subquery(
                    join_type(e, &absent, ctx.as_of),
                    scope_aggregates(ctx.dialect, scope, cols, ctx.as_of),
                    Alias::new(alias.clone()),
                    SqlExpr::col((Alias::new(alias.clone()), USER_ID)).equals((USERS, USER_ID)),
                );
                located.insert(scope.clone(), (alias, String::new()));
            }
        }
    }
    let cond = user_condition(ctx.dialect, e, &located, ctx.as_of);
    q.and_where(cond);
    q
}

/// The filter read from one shared aggregate table alone, without `users`: when the
/// condition reads no profile field, every scope it reads is in that table, and it is false for
/// a user without a row there. The table holds only users with a profile (its fill keeps
/// those), so its rows with the condition true are exactly the members.
fn aggregates_only(
    inner: &SetExpr,
    e: &Expr,
    needs: &AggregateNeeds,
    ctx: &RenderContext<'_>,
) -> Option<SelectStatement> {
    let Aggregates::Shared(layout) = ctx.aggregates else {
        return None;
    };
    let i = layout.aggregates_only_table(e, needs, ctx.as_of)?;
    let alias = format!("a{i}");
    let mut q = Query::select();
    from_narrowed(&mut q, &layout.tables[i].name, &alias, inner, ctx);
    let located = needs
        .keys()
        .filter_map(|s| {
            let (_, prefix) = layout.locate(s)?;
            Some((s.clone(), (alias.clone(), prefix.to_owned())))
        })
        .collect();
    q.and_where(user_condition(ctx.dialect, e, &located, ctx.as_of));
    Some(q)
}

/// The filter read from the refresh's users table alone: when every scope the condition reads
/// is in a shared table copied there and every profile field it reads is copied too. The
/// table has one row per user in `users` with the aggregates a `LEFT JOIN` gives, so it
/// stands in for `users` and its joined aggregates.
fn from_users_table(
    inner: &SetExpr,
    e: &Expr,
    needs: &AggregateNeeds,
    ctx: &RenderContext<'_>,
) -> Option<SelectStatement> {
    let Aggregates::Shared(layout) = ctx.aggregates else {
        return None;
    };
    let users = layout.users_table.as_ref()?;
    let mut read = BTreeSet::new();
    profile_fields(e, &mut read);
    if !read.is_subset(&users.profile) {
        return None;
    }
    const WIDE: &str = "w";
    let mut located = BTreeMap::new();
    for (scope, cols) in needs {
        let (i, prefix) = layout.locate(scope)?;
        if !users
            .needs
            .get(scope)
            .is_some_and(|copied| cols.is_subset(copied))
        {
            return None;
        }
        let prefix = users_table_prefix(&layout.tables[i], prefix);
        located.insert(scope.clone(), (WIDE.to_owned(), prefix));
    }
    let mut q = Query::select();
    from_narrowed(&mut q, &users.name, WIDE, inner, ctx);
    q.and_where(condition_on(ctx.dialect, e, WIDE, &located, ctx.as_of));
    Some(q)
}

/// The profile fields a condition reads.
fn profile_fields(e: &Expr, out: &mut BTreeSet<Field>) {
    match e {
        Expr::True | Expr::False | Expr::Pred(Pred::Aggregate { .. } | Pred::Tx { .. }) => {}
        // A location is read by user id, which every table of users has.
        Expr::Pred(Pred::Profile { field, .. }) if field.is_users_column() => {
            out.insert(*field);
        }
        Expr::Pred(Pred::Profile { .. }) => {}
        Expr::All(xs) | Expr::Any(xs) => xs.iter().for_each(|x| profile_fields(x, out)),
        Expr::Not(x) => profile_fields(x, out),
    }
}

/// `SELECT <key> FROM <table> AS <rows>` narrowed to the members of the set the filter reads,
/// joined as `b`: a segment table, or any other set as a subquery; all users need no join.
///
/// By default the table drives the query and each of its rows is looked up in `b`. With
/// `ctx.base_first`, `b` comes first and each member is looked up in the table (by its
/// `user_id` key); `CROSS JOIN` is how SQLite is told to keep that order. The key selected is
/// the driving table's, so the rows come out in `user_id` order without a sort.
fn from_narrowed(
    q: &mut SelectStatement,
    table: &str,
    rows: &str,
    inner: &SetExpr,
    ctx: &RenderContext<'_>,
) {
    // Only this filter is driven from its base; sets inside the base choose for themselves.
    let inner_ctx = RenderContext {
        base_first: false,
        ..*ctx
    };
    let base = match inner {
        SetExpr::AllUsers => None,
        SetExpr::Segment(id) => Some(Alias::new(segment_table(*id)).into_table_ref().alias(BASE)),
        other => Some(TableRef::SubQuery(
            Box::new(render_set(other, &inner_ctx)),
            BASE.into_iden(),
        )),
    };
    let mut table_ref = Alias::new(table).into_table_ref();
    if table != rows {
        table_ref = table_ref.alias(Alias::new(rows));
    }
    let on = SqlExpr::col((BASE, USER_ID)).equals((Alias::new(rows), USER_ID));
    // The shared scratch tables hold only the users the layout is restricted to already.
    if let Some(only) = restriction(ctx).filter(|_| table == USERS) {
        restrict(q, rows, only);
    }
    match base {
        None => {
            q.column((Alias::new(rows), USER_ID)).from(table_ref);
        }
        Some(base) if ctx.base_first => {
            // sea-query writes no `ON` for a cross join; the key equality goes in `WHERE`.
            q.column((BASE, USER_ID))
                .from(base)
                .join(sea_query::JoinType::CrossJoin, table_ref, Condition::all())
                .and_where(on);
        }
        Some(base) => {
            q.column((Alias::new(rows), USER_ID)).from(table_ref).join(
                sea_query::JoinType::InnerJoin,
                base,
                on,
            );
        }
    }
}

/// Whether a condition reads a profile field (a column of `users`).
fn reads_profile(e: &Expr) -> bool {
    match e {
        Expr::True | Expr::False | Expr::Pred(Pred::Aggregate { .. } | Pred::Tx { .. }) => false,
        Expr::Pred(Pred::Profile { .. }) => true,
        Expr::All(xs) | Expr::Any(xs) => xs.iter().any(reads_profile),
        Expr::Not(x) => reads_profile(x),
    }
}

/// `INNER JOIN` when a user without a row in the joined aggregates cannot satisfy the
/// condition (`total_spend > 1000`), so SQLite may drive the query from the aggregates;
/// `LEFT JOIN` otherwise (`total_spend < 100` holds for users with no transactions).
fn join_type(e: &Expr, absent: &dyn Fn(&Scope) -> bool, as_of: Timestamp) -> sea_query::JoinType {
    if when_absent(e, absent, as_of) == Some(false) {
        sea_query::JoinType::InnerJoin
    } else {
        sea_query::JoinType::LeftJoin
    }
}

/// The condition's value for a user with no transactions in the `absent` scopes, if known
/// without the user's other values (three-valued: `None` is unknown). Aggregates over absent
/// scopes take the evaluator's own values for a user without transactions.
fn when_absent(e: &Expr, absent: &dyn Fn(&Scope) -> bool, as_of: Timestamp) -> Option<bool> {
    match e {
        Expr::True => Some(true),
        Expr::False => Some(false),
        Expr::All(xs) => {
            let vs: Vec<Option<bool>> = xs.iter().map(|x| when_absent(x, absent, as_of)).collect();
            if vs.contains(&Some(false)) {
                Some(false)
            } else if vs.iter().all(|v| *v == Some(true)) {
                Some(true)
            } else {
                None
            }
        }
        Expr::Any(xs) => {
            let vs: Vec<Option<bool>> = xs.iter().map(|x| when_absent(x, absent, as_of)).collect();
            if vs.contains(&Some(true)) {
                Some(true)
            } else if vs.iter().all(|v| *v == Some(false)) {
                Some(false)
            } else {
                None
            }
        }
        Expr::Not(x) => when_absent(x, absent, as_of).map(|v| !v),
        Expr::Pred(Pred::Aggregate { scope, .. }) if absent(scope) => {
            let nobody = am_core::evaluate::User {
                user_id: 0,
                name: None,
                email: None,
                city_tier: None,
                created_at: None,
            };
            let empty = am_core::evaluate::Dataset::default();
            Some(am_core::evaluate::matches(e, &nobody, &empty, as_of))
        }
        Expr::Pred(Pred::Tx { .. }) => Some(false),
        Expr::Pred(_) => None,
    }
}

/// `SELECT t.user_id, <aggregates> FROM <scope's transactions> AS t GROUP BY t.user_id`.
pub fn scope_aggregates(
    d: Dialect,
    scope: &Scope,
    cols: &BTreeSet<AggColumn>,
    as_of: Timestamp,
) -> SelectStatement {
    let mut q = Query::select();
    q.column((SCAN, USER_ID));
    for col in cols {
        q.expr_as(aggregate_column(d, *col, None), col.name());
    }
    let columns = cols.iter().filter_map(|c| scan_column(*c)).collect();
    let scan = scan_statement(
        d,
        scope.source,
        &scope.window,
        scope.filter.as_deref(),
        &columns,
        as_of,
        None,
    );
    q.from_subquery(scan, SCAN).group_by_col((SCAN, USER_ID));
    q
}

/// Column `name` of a row of `table` combined with the same column of the row being inserted
/// (`excluded`), as the aggregate over both rows' transactions: sums add up (null only when
/// both are null), counts add up, minima and maxima take the smaller or larger known value.
fn merged_column(col: AggColumn, table: &str, name: &str) -> SqlExpr {
    let old = || SqlExpr::col((Alias::new(table), Alias::new(name)));
    let new = || SqlExpr::col((Alias::new("excluded"), Alias::new(name)));
    // `new` replaces `old` where `better(new, old)` holds or `old` is unknown.
    let pick = |better: SqlExpr| -> SqlExpr {
        sea_query::CaseStatement::new()
            .case(better.or(old().is_null()), new())
            .finally(old())
            .into()
    };
    match col {
        AggColumn::TotalCents => Func::coalesce([old().add(new()), old(), new()]).into(),
        AggColumn::TxCount | AggColumn::AmountCount => old().add(new()),
        AggColumn::MinCents | AggColumn::FirstDate => pick(new().lt(old())),
        AggColumn::MaxCents | AggColumn::LastDate => pick(new().gt(old())),
        // Never merged: `fill_statements` keeps a distinct count in one statement.
        AggColumn::DistinctCategories => new(),
    }
}

/// Amount in integer cents, exact for decimals written as binary floating point.
fn cents_of(amount: SqlExpr) -> SqlExpr {
    Func::cast_as(Func::round(amount.mul(100)), "BIGINT").into()
}

/// One aggregate over the scan `t`; with a guard, only rows where it holds count.
fn aggregate_column(d: Dialect, col: AggColumn, guard: Option<&Expr>) -> SqlExpr {
    let guarded = |value: SqlExpr| -> SqlExpr {
        match guard {
            None => value,
            Some(f) => sea_query::CaseStatement::new()
                .case(tx_condition(d, f, Source::All, true), value)
                .into(),
        }
    };
    let col_ref = |name: &'static str| SqlExpr::col((SCAN, name));
    match col {
        // BIGINT again: engines with sized integers widen a sum to a decimal.
        AggColumn::TotalCents => {
            Func::cast_as(Func::sum(guarded(col_ref("cents"))), "BIGINT").into()
        }
        AggColumn::TxCount => match guard {
            None => Func::count(SqlExpr::cust("*")).into(),
            Some(_) => Func::count(guarded(SqlExpr::val(1))).into(),
        },
        AggColumn::AmountCount => Func::count(guarded(col_ref("cents"))).into(),
        AggColumn::MinCents => Func::min(guarded(col_ref("cents"))).into(),
        AggColumn::MaxCents => Func::max(guarded(col_ref("cents"))).into(),
        AggColumn::FirstDate => Func::min(guarded(col_ref("transaction_date"))).into(),
        AggColumn::LastDate => Func::max(guarded(col_ref("transaction_date"))).into(),
        AggColumn::DistinctCategories => Func::count_distinct(guarded(col_ref("category"))).into(),
    }
}

/// The transactions of a source inside a window (and a filter, if given), as rows of
/// `user_id, cents, category, merchant, description, transaction_date`. Source `All` is both
/// tables `UNION ALL`, with `merchant` null on UPI rows and `description` null on card rows.
/// With `only`, the transactions of the users in that table.
fn scan_statement(
    d: Dialect,
    source: Source,
    window: &Window,
    filter: Option<&Expr>,
    columns: &BTreeSet<&'static str>,
    as_of: Timestamp,
    only: Option<&str>,
) -> SelectStatement {
    let branch = |table: Source| {
        let name = if table == Source::Upi {
            UPI
        } else {
            CREDIT_CARD
        };
        let mut q = Query::select();
        q.column(USER_ID);
        // Only the columns the aggregates and guards read, so an index covering
        // (user_id, transaction_date, amount) can answer the scan alone.
        for &col in columns {
            match col {
                "cents" => {
                    q.expr_as(cents_of(SqlExpr::col("amount")), "cents");
                }
                "merchant" => {
                    q.expr_as(tx_column(Field::Merchant, table), "merchant");
                }
                "description" => {
                    q.expr_as(tx_column(Field::Description, table), "description");
                }
                other => {
                    q.column(other);
                }
            }
        }
        q.from(name);
        for c in window_conditions(d, window, as_of) {
            q.and_where(c);
        }
        if let Some(f) = filter {
            q.and_where(tx_condition(d, f, table, false));
        }
        if let Some(only) = only {
            q.and_where(SqlExpr::col(USER_ID).in_subquery(ids_in(only)));
        }
        q
    };
    match source {
        Source::CreditCard => branch(Source::CreditCard),
        Source::Upi => branch(Source::Upi),
        Source::All => {
            let mut q = branch(Source::CreditCard);
            q.union(UnionType::All, branch(Source::Upi));
            q
        }
    }
}

/// The scan columns (`cents` for the amount) an aggregate column reads.
fn scan_column(col: AggColumn) -> Option<&'static str> {
    match col {
        AggColumn::TotalCents
        | AggColumn::AmountCount
        | AggColumn::MinCents
        | AggColumn::MaxCents => Some("cents"),
        AggColumn::FirstDate | AggColumn::LastDate => Some("transaction_date"),
        AggColumn::DistinctCategories => Some("category"),
        AggColumn::TxCount => None,
    }
}

/// The scan columns a transaction filter reads, when it is evaluated on the scan.
fn filter_columns(e: &Expr, out: &mut BTreeSet<&'static str>) {
    match e {
        Expr::True | Expr::False | Expr::Pred(Pred::Profile { .. } | Pred::Aggregate { .. }) => {}
        Expr::All(xs) | Expr::Any(xs) => xs.iter().for_each(|x| filter_columns(x, out)),
        Expr::Not(x) => filter_columns(x, out),
        Expr::Pred(Pred::Tx { field, .. }) => {
            out.insert(match field {
                Field::Amount => "cents",
                Field::Merchant => "merchant",
                Field::Description => "description",
                Field::TransactionDate => "transaction_date",
                _ => "category",
            });
        }
    }
}

/// The bounds of a window on `transaction_date`; none when unbounded (null dates kept).
fn window_conditions(d: Dialect, window: &Window, as_of: Timestamp) -> Vec<SqlExpr> {
    let date = || SqlExpr::col("transaction_date");
    let (start, end) = match window {
        Window::Range { start, end } => (*start, *end),
        // An n so large it leaves the calendar is an unbounded start.
        Window::LastDays(n) => (
            as_of.checked_sub_signed(Duration::days(i64::from(*n))),
            Some(as_of),
        ),
    };
    let mut out = Vec::new();
    if let Some(s) = start {
        out.push(date().gte(d.time_value(s)));
    }
    if let Some(e) = end {
        out.push(date().lte(d.time_value(e)));
    }
    // `LastDays` with an unrepresentable start still needs a date.
    if out.is_empty() && window.is_relative() {
        out.push(date().is_not_null());
    }
    out
}

/// A transaction field's column in one branch of the scan (`t.<col>` when reading the scan
/// itself); null where the table has no such column.
fn tx_column(field: Field, table: Source) -> SqlExpr {
    match (field, table) {
        (Field::Merchant, Source::Upi) | (Field::Description, Source::CreditCard) => {
            SqlExpr::cust("NULL")
        }
        (f, _) => SqlExpr::col(f.name()),
    }
}

/// A condition over transaction rows. `on_scan` reads the columns of the scan `t` (for the
/// `CASE` guards of shared tables), else the base table of `table`.
fn tx_condition(d: Dialect, e: &Expr, table: Source, on_scan: bool) -> SqlExpr {
    bool_tree(e, &mut |p| match p {
        Pred::Tx { field, test } => {
            let subject = if on_scan {
                if *field == Field::Amount {
                    SqlExpr::col((SCAN, "cents"))
                } else {
                    SqlExpr::col((SCAN, field.name()))
                }
            } else if *field == Field::Amount {
                cents_of(SqlExpr::col("amount"))
            } else {
                tx_column(*field, table)
            };
            render_test(d, Subject::Plain(subject, field.value_type()), test)
        }
        // Only transaction fields have meaning on a transaction row.
        Pred::Profile { .. } | Pred::Aggregate { .. } => false_expr(),
    })
}

/// A condition over users: profile fields on `users`, aggregates from their located columns.
fn user_condition(
    d: Dialect,
    e: &Expr,
    located: &BTreeMap<Scope, (String, String)>,
    as_of: Timestamp,
) -> SqlExpr {
    condition_on(d, e, USERS, located, as_of)
}

/// [`user_condition`] with the profile fields read from table (or alias) `profile`.
fn condition_on(
    d: Dialect,
    e: &Expr,
    profile: &str,
    located: &BTreeMap<Scope, (String, String)>,
    as_of: Timestamp,
) -> SqlExpr {
    bool_tree(e, &mut |p| match p {
        Pred::Profile {
            field: Field::Location,
            test,
        } => match test {
            Test::WithinKm(circle) => {
                crate::geo::within(SqlExpr::col((Alias::new(profile), USER_ID)), circle)
            }
            // Validation allows nothing else on a location.
            _ => false_expr(),
        },
        Pred::Profile { field, test } => render_test(
            d,
            Subject::Plain(
                SqlExpr::col((Alias::new(profile), field.name())),
                field.value_type(),
            ),
            test,
        ),
        Pred::Aggregate { field, scope, test } => match located.get(scope) {
            Some((alias, prefix)) => {
                let col = |c: AggColumn| {
                    SqlExpr::col((
                        Alias::new(alias.clone()),
                        Alias::new(format!("{prefix}{}", c.name())),
                    ))
                };
                let zero_if_none =
                    |c: AggColumn| -> SqlExpr { Func::coalesce([col(c), SqlExpr::val(0)]).into() };
                let subject = match field {
                    Field::TotalSpend => {
                        Subject::Plain(zero_if_none(AggColumn::TotalCents), ValueType::Money)
                    }
                    Field::TransactionCount => {
                        Subject::Plain(zero_if_none(AggColumn::TxCount), ValueType::Integer)
                    }
                    Field::DistinctCategories => Subject::Plain(
                        zero_if_none(AggColumn::DistinctCategories),
                        ValueType::Integer,
                    ),
                    Field::MinTransactionAmount => {
                        Subject::Plain(col(AggColumn::MinCents), ValueType::Money)
                    }
                    Field::MaxTransactionAmount => {
                        Subject::Plain(col(AggColumn::MaxCents), ValueType::Money)
                    }
                    Field::FirstTransactionDate => {
                        Subject::Plain(col(AggColumn::FirstDate), ValueType::Timestamp)
                    }
                    Field::LastTransactionDate => {
                        Subject::Plain(col(AggColumn::LastDate), ValueType::Timestamp)
                    }
                    Field::DaysSinceLastTransaction => Subject::Plain(
                        d.days_since(as_of.date(), col(AggColumn::LastDate)),
                        ValueType::Integer,
                    ),
                    Field::AvgTransactionAmount => Subject::Avg {
                        sum: col(AggColumn::TotalCents),
                        n: col(AggColumn::AmountCount),
                    },
                    // Not an aggregate: no value, as the evaluator says.
                    _ => Subject::Plain(SqlExpr::cust("NULL"), field.value_type()),
                };
                render_test(d, subject, test)
            }
            None => false_expr(),
        },
        // A transaction field has no meaning for a user.
        Pred::Tx { .. } => false_expr(),
    })
}

fn true_expr() -> SqlExpr {
    SqlExpr::cust("TRUE")
}

fn false_expr() -> SqlExpr {
    SqlExpr::cust("FALSE")
}

fn all_of(xs: Vec<SqlExpr>) -> SqlExpr {
    let mut it = xs.into_iter();
    match it.next() {
        None => true_expr(),
        Some(first) => it.fold(first, |acc, x| acc.and(x)),
    }
}

fn any_of_sql(xs: Vec<SqlExpr>) -> SqlExpr {
    let mut it = xs.into_iter();
    match it.next() {
        None => false_expr(),
        Some(first) => it.fold(first, |acc, x| acc.or(x)),
    }
}

fn any_of(xs: Vec<Expr>) -> Expr {
    Expr::Any(xs)
}

/// `True`/`False`/`All`/`Any`/`Not` over leaves rendered by `leaf`. SQL's three-valued
/// AND/OR treat null as false where a WHERE reads them; only `NOT` must turn null into true,
/// hence `NOT COALESCE(x, FALSE)`.
fn bool_tree(e: &Expr, leaf: &mut dyn FnMut(&Pred) -> SqlExpr) -> SqlExpr {
    match e {
        Expr::True => true_expr(),
        Expr::False => false_expr(),
        Expr::All(xs) => all_of(xs.iter().map(|x| bool_tree(x, leaf)).collect()),
        Expr::Any(xs) => any_of_sql(xs.iter().map(|x| bool_tree(x, leaf)).collect()),
        Expr::Not(x) => Func::coalesce([bool_tree(x, leaf), false_expr()]).not(),
        Expr::Pred(p) => leaf(p),
    }
}

/// What a test applies to: a value of a type, or the exact average `sum / n`.
enum Subject {
    Plain(SqlExpr, ValueType),
    Avg { sum: SqlExpr, n: SqlExpr },
}

/// A value as SQL, if it has the type of the subject (a test against a value of another type
/// is false, as in the evaluator).
fn typed_value(d: Dialect, v: &Value, ty: ValueType) -> Option<sea_query::Value> {
    match (v, ty) {
        (Value::Int(i), ValueType::Integer) | (Value::Money(i), ValueType::Money) => {
            Some((*i).into())
        }
        (Value::Text(s), ValueType::Text) => Some(s.clone().into()),
        (Value::Time(t), ValueType::Timestamp) => Some(d.time_value(*t)),
        _ => None,
    }
}

fn cmp(op: CmpOp, l: SqlExpr, r: SqlExpr) -> SqlExpr {
    match op {
        CmpOp::Eq => l.eq(r),
        CmpOp::Ne => l.ne(r),
        CmpOp::Gt => l.gt(r),
        CmpOp::Ge => l.gte(r),
        CmpOp::Lt => l.lt(r),
        CmpOp::Le => l.lte(r),
    }
}

fn render_test(d: Dialect, subject: Subject, test: &Test) -> SqlExpr {
    match subject {
        Subject::Plain(x, ty) => plain_test(d, x, ty, test),
        Subject::Avg { sum, n } => avg_test(sum, n, test),
    }
}

fn plain_test(d: Dialect, x: SqlExpr, ty: ValueType, test: &Test) -> SqlExpr {
    let val = |v: &Value| typed_value(d, v, ty).map(SqlExpr::val);
    match test {
        Test::IsNull => x.is_null(),
        Test::IsNotNull => x.is_not_null(),
        Test::Cmp(op, v) => match val(v) {
            Some(v) => cmp(*op, x, v),
            None => false_expr(),
        },
        Test::In(vs) => {
            let vs: Vec<sea_query::Value> =
                vs.iter().filter_map(|v| typed_value(d, v, ty)).collect();
            if vs.is_empty() {
                false_expr()
            } else {
                x.is_in(vs)
            }
        }
        Test::NotIn(vs) => {
            let typed: Option<Vec<sea_query::Value>> =
                vs.iter().map(|v| typed_value(d, v, ty)).collect();
            match typed {
                // A value of another type is never "unequal" in the evaluator.
                None => false_expr(),
                Some(vs) if vs.is_empty() => x.is_not_null(),
                Some(vs) => x.is_not_in(vs),
            }
        }
        Test::Between(lo, hi) => match (val(lo), val(hi)) {
            (Some(lo), Some(hi)) => x.clone().gte(lo).and(x.lte(hi)),
            _ => false_expr(),
        },
        Test::NotBetween(lo, hi) => {
            let mut parts = Vec::new();
            if let Some(lo) = val(lo) {
                parts.push(x.clone().lt(lo));
            }
            if let Some(hi) = val(hi) {
                parts.push(x.gt(hi));
            }
            any_of_sql(parts)
        }
        Test::Contains(needle) if ty == ValueType::Text => {
            d.ascii_position(x, &needle.to_ascii_lowercase()).gt(0)
        }
        Test::StartsWith(prefix) if ty == ValueType::Text => {
            d.ascii_position(x, &prefix.to_ascii_lowercase()).eq(1)
        }
        // Rendered by the predicate itself: a location is no column.
        Test::Contains(_) | Test::StartsWith(_) | Test::WithinKm(_) => false_expr(),
    }
}

/// `avg op v` as `n > 0 AND sum op v * n`, with no division and no floating point.
fn avg_test(sum: SqlExpr, n: SqlExpr, test: &Test) -> SqlExpr {
    let money = |v: &Value| match v {
        Value::Money(c) => Some(*c),
        _ => None,
    };
    let scaled = |c: i64| SqlExpr::val(c).mul(n.clone());
    let some = || n.clone().gt(0);
    let body = match test {
        Test::IsNull => return Func::coalesce([n.clone(), SqlExpr::val(0)]).eq(0),
        Test::IsNotNull => return some(),
        Test::Cmp(op, v) => match money(v) {
            Some(c) => cmp(*op, sum, scaled(c)),
            None => return false_expr(),
        },
        Test::In(vs) => any_of_sql(
            vs.iter()
                .filter_map(money)
                .map(|c| sum.clone().eq(scaled(c)))
                .collect(),
        ),
        Test::NotIn(vs) => {
            let cs: Option<Vec<i64>> = vs.iter().map(money).collect();
            match cs {
                None => return false_expr(),
                Some(cs) => all_of(cs.into_iter().map(|c| sum.clone().ne(scaled(c))).collect()),
            }
        }
        Test::Between(lo, hi) => match (money(lo), money(hi)) {
            (Some(lo), Some(hi)) => sum.clone().gte(scaled(lo)).and(sum.lte(scaled(hi))),
            _ => return false_expr(),
        },
        Test::NotBetween(lo, hi) => {
            let mut parts = Vec::new();
            if let Some(lo) = money(lo) {
                parts.push(sum.clone().lt(scaled(lo)));
            }
            if let Some(hi) = money(hi) {
                parts.push(sum.gt(scaled(hi)));
            }
            any_of_sql(parts)
        }
        Test::Contains(_) | Test::StartsWith(_) | Test::WithinKm(_) => return false_expr(),
    };
    some().and(body)
}
