package migcheck

// Rule names. A finding carries one; an allow comment names one.
const (
	RuleDropColumn      = "drop-column"
	RuleDropTable       = "drop-table"
	RuleRenameColumn    = "rename-column"
	RuleRenameTable     = "rename-table"
	RuleColumnType      = "alter-column-type"
	RuleSetNotNull      = "set-not-null"
	RuleAddNotNull      = "add-column-not-null"
	RuleVolatileDefault = "volatile-default"
	RuleIndexLock       = "create-index"
	RuleIndexInTx       = "concurrent-in-transaction"
	RuleForeignKey      = "add-foreign-key"
	RuleCheck           = "add-check"
	RuleLockTimeout     = "lock-timeout"
	RuleUnknownRule     = "unknown-rule"
)

// Rule describes one check: what it flags, why, and what to do instead.
type Rule struct {
	Name string
	// Contract rules break the code of the color still running during a
	// blue/green push; a contract migration, run once the old color is gone,
	// may do them.
	Contract bool
	Why      string
	Fix      string
}

// Rules lists every rule in the order the README shows them.
var Rules = []Rule{
	{RuleDropColumn, true,
		"the old color still reads or writes this column and fails once it is gone",
		"stop using the column, push, then drop it in a contract migration (NAME.contract.sql)"},
	{RuleDropTable, true,
		"the old color still uses this table and fails once it is gone",
		"stop using the table, push, then drop it in a contract migration (NAME.contract.sql)"},
	{RuleRenameColumn, true,
		"the old color still uses the old name and fails at once",
		"add the new column, write both, backfill, switch reads, push; drop the old one in a contract migration"},
	{RuleRenameTable, true,
		"the old color still uses the old name and fails at once",
		"create the new table (or a view with the old name), move the code, then drop the old name in a contract migration"},
	{RuleColumnType, true,
		"it rewrites the table under an ACCESS EXCLUSIVE lock, and the old color's queries may break on the new type",
		"add a column of the new type, backfill in batches, switch the code, drop the old column in a contract migration"},
	{RuleSetNotNull, true,
		"the old color may still insert rows without this column, and the check scans the table under an ACCESS EXCLUSIVE lock",
		"ADD CONSTRAINT ... CHECK (col IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, and SET NOT NULL in a contract migration"},
	{RuleAddNotNull, false,
		"it fails on a table with rows, and the old color's inserts do not set the column",
		"add the column nullable (or with a constant DEFAULT), backfill, then make it NOT NULL later"},
	{RuleVolatileDefault, false,
		"it rewrites the whole table under an ACCESS EXCLUSIVE lock",
		"add the column without a default (or with a constant one), set the default after, backfill in batches"},
	{RuleIndexLock, false,
		"it blocks every write to the table while the index builds",
		"CREATE INDEX CONCURRENTLY, outside a transaction"},
	{RuleIndexInTx, false,
		"Postgres refuses CONCURRENTLY inside a transaction block, so the migration fails",
		"move the statement out of BEGIN ... COMMIT, into a file of its own"},
	{RuleForeignKey, false,
		"it checks every row while both tables are locked against writes",
		"ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, then VALIDATE CONSTRAINT in a later statement"},
	{RuleCheck, false,
		"it scans the whole table under an ACCESS EXCLUSIVE lock",
		"ADD CONSTRAINT ... CHECK (...) NOT VALID, then VALIDATE CONSTRAINT in a later statement"},
	{RuleLockTimeout, false,
		"a statement waiting for its lock queues every later query on that table behind it, which stalls the live color",
		"start the file with SET lock_timeout = '5s' (or SET LOCAL lock_timeout inside its transaction)"},
	{RuleUnknownRule, false,
		"an allow comment names a rule that does not exist, so it allows nothing",
		"name a rule of the README's Migration safety check table"},
}

var rulesByName = func() map[string]Rule {
	m := make(map[string]Rule, len(Rules))
	for _, r := range Rules {
		m[r.Name] = r
	}
	return m
}()

// LookupRule returns the rule with this name.
func LookupRule(name string) (Rule, bool) {
	r, ok := rulesByName[name]
	return r, ok
}
