//! The catalog of fields a condition may name: profile fields, per-user aggregates and
//! transaction fields, with their value types and how they treat users with no transactions.
//!
//! Every column name that reaches SQL comes from here, never from user input.

use serde::Serialize;

/// What a field is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    /// One value per user, from the `users` table.
    Profile,
    /// One value per user, computed over that user's transactions in a scope.
    Aggregate,
    /// One value per transaction; usable inside `where` or the seed's flat list.
    Transaction,
}

/// The type of a field's values, which decides the operators and value forms it accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    Integer,
    /// Exact to the cent.
    Money,
    Text,
    /// UTC `YYYY-MM-DD HH:MM:SS`; a date alone means that whole day.
    Timestamp,
    /// A point on the Earth (latitude, longitude), tested only by distance.
    Location,
}

/// Which transaction tables carry a transaction field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Availability {
    Both,
    CreditCardOnly,
    UpiOnly,
}

macro_rules! fields {
    ($( $variant:ident => $name:literal, $kind:ident, $ty:ident, $doc:literal; )*) => {
        /// A field of the condition language.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Field {
            $( #[doc = $doc] $variant, )*
        }

        impl Field {
            /// Every field, in catalog order.
            pub const ALL: &'static [Field] = &[$(Field::$variant),*];

            /// The name users write, which is also the column or aggregate name.
            pub fn name(self) -> &'static str {
                match self { $(Field::$variant => $name,)* }
            }

            pub fn kind(self) -> FieldKind {
                match self { $(Field::$variant => FieldKind::$kind,)* }
            }

            pub fn value_type(self) -> ValueType {
                match self { $(Field::$variant => ValueType::$ty,)* }
            }

            /// One line for users: what the field means.
            pub fn doc(self) -> &'static str {
                match self { $(Field::$variant => $doc,)* }
            }
        }
    };
}

fields! {
    UserId => "user_id", Profile, Integer, "the user's id";
    Name => "name", Profile, Text, "the user's full name";
    Email => "email", Profile, Text, "the user's email address";
    CityTier => "city_tier", Profile, Integer, "the tier of the user's city (1, 2, 3)";
    CreatedAt => "created_at", Profile, Timestamp, "when the user was added";
    Location => "location", Profile, Location, "the user's latitude and longitude, from user_locations; none for a user without a row there";
    TotalSpend => "total_spend", Aggregate, Money, "sum of amounts; 0 for a user with no transactions";
    TransactionCount => "transaction_count", Aggregate, Integer, "number of transactions; 0 for none";
    AvgTransactionAmount => "avg_transaction_amount", Aggregate, Money, "mean amount; null for none";
    MaxTransactionAmount => "max_transaction_amount", Aggregate, Money, "largest amount; null for none";
    MinTransactionAmount => "min_transaction_amount", Aggregate, Money, "smallest amount; null for none";
    FirstTransactionDate => "first_transaction_date", Aggregate, Timestamp, "earliest transaction time; null for none";
    LastTransactionDate => "last_transaction_date", Aggregate, Timestamp, "latest transaction time; null for none";
    DaysSinceLastTransaction => "days_since_last_transaction", Aggregate, Integer, "calendar days from the last transaction's date to the as-of date; null for none";
    DistinctCategories => "distinct_categories", Aggregate, Integer, "number of distinct categories; 0 for none";
    Category => "category", Transaction, Text, "the transaction's spending category";
    Merchant => "merchant", Transaction, Text, "the merchant (credit card only; null on UPI)";
    Description => "description", Transaction, Text, "the payment description (UPI only; null on credit card)";
    Amount => "amount", Transaction, Money, "the transaction's amount";
    TransactionDate => "transaction_date", Transaction, Timestamp, "when the transaction happened";
}

impl Field {
    /// Looks a field up by the name users write.
    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// Names of every field of a kind, for "allowed: ..." messages.
    pub fn names_of(kind: FieldKind) -> Vec<&'static str> {
        Field::ALL
            .iter()
            .filter(|f| f.kind() == kind)
            .map(|f| f.name())
            .collect()
    }

    /// For an aggregate: whether a user with no transactions in scope has null (else 0).
    pub fn null_when_empty(self) -> bool {
        matches!(
            self,
            Field::AvgTransactionAmount
                | Field::MaxTransactionAmount
                | Field::MinTransactionAmount
                | Field::FirstTransactionDate
                | Field::LastTransactionDate
                | Field::DaysSinceLastTransaction
        )
    }

    /// Whether the field is a column of `users` (a location lives in `user_locations`).
    pub fn is_users_column(self) -> bool {
        self.kind() == FieldKind::Profile && self != Field::Location
    }

    /// For a transaction field: which tables carry it.
    pub fn availability(self) -> Availability {
        match self {
            Field::Merchant => Availability::CreditCardOnly,
            Field::Description => Availability::UpiOnly,
            _ => Availability::Both,
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Field {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in Field::ALL {
            assert_eq!(Field::parse(f.name()), Some(*f));
        }
        assert_eq!(Field::parse("totalspend"), None);
    }
}
