package migcheck

import (
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// statement applies the rules to one statement and keeps the file's state:
// transaction, lock_timeout, tables created so far.
func (c *checker) statement(s *stmt) {
	locks := false // takes a lock on a table that existed before this file
	n := s.node
	switch {
	case n.GetTransactionStmt() != nil:
		switch n.GetTransactionStmt().Kind {
		case pg.TransactionStmtKind_TRANS_STMT_BEGIN, pg.TransactionStmtKind_TRANS_STMT_START:
			c.inTx = true
		case pg.TransactionStmtKind_TRANS_STMT_COMMIT, pg.TransactionStmtKind_TRANS_STMT_ROLLBACK:
			c.inTx = false
			c.localTimeout = false
		}
	case n.GetVariableSetStmt() != nil:
		c.setting(n.GetVariableSetStmt())
	case n.GetCreateStmt() != nil:
		cs := n.GetCreateStmt()
		c.created[relName(cs.Relation)] = true
		// A foreign key to an existing table locks that table.
		for _, e := range cs.TableElts {
			cons := e.GetConstraint()
			if cd := e.GetColumnDef(); cd != nil {
				for _, k := range cd.Constraints {
					if k.GetConstraint().GetContype() == pg.ConstrType_CONSTR_FOREIGN {
						cons = k.GetConstraint()
					}
				}
			}
			if cons.GetContype() == pg.ConstrType_CONSTR_FOREIGN && !c.created[relName(cons.Pktable)] {
				locks = true
			}
		}
	case n.GetAlterTableStmt() != nil:
		at := n.GetAlterTableStmt()
		if at.Objtype == pg.ObjectType_OBJECT_TABLE && c.created[relName(at.Relation)] {
			break
		}
		locks = true
		if at.Objtype != pg.ObjectType_OBJECT_TABLE {
			break
		}
		table := relName(at.Relation)
		for _, cn := range at.Cmds {
			c.alterTable(s, table, cn.GetAlterTableCmd())
		}
	case n.GetRenameStmt() != nil:
		r := n.GetRenameStmt()
		table := relName(r.Relation)
		if c.created[table] {
			break
		}
		locks = true
		switch {
		case r.RenameType == pg.ObjectType_OBJECT_COLUMN && r.RelationType == pg.ObjectType_OBJECT_TABLE:
			c.flag(s, RuleRenameColumn, "rename column "+table+"."+r.Subname+" to "+r.Newname)
		case r.RenameType == pg.ObjectType_OBJECT_TABLE:
			c.flag(s, RuleRenameTable, "rename table "+table+" to "+r.Newname)
		}
	case n.GetDropStmt() != nil:
		d := n.GetDropStmt()
		switch d.RemoveType {
		case pg.ObjectType_OBJECT_TABLE:
			var old []string
			for _, o := range d.Objects {
				if name := listName(o); !c.created[name] {
					old = append(old, name)
				}
			}
			if len(old) > 0 {
				locks = true
				c.flag(s, RuleDropTable, "drop table "+strings.Join(old, ", "))
			}
		case pg.ObjectType_OBJECT_INDEX:
			locks = true
			if d.Concurrent && c.inTx {
				c.flag(s, RuleIndexInTx, "DROP INDEX CONCURRENTLY inside BEGIN ... COMMIT")
			}
		}
	case n.GetIndexStmt() != nil:
		ix := n.GetIndexStmt()
		table := relName(ix.Relation)
		if c.created[table] {
			break
		}
		locks = true
		switch {
		case ix.Concurrent && c.inTx:
			c.flag(s, RuleIndexInTx, "CREATE INDEX CONCURRENTLY on "+table+" inside BEGIN ... COMMIT")
		case !ix.Concurrent:
			c.flag(s, RuleIndexLock, "CREATE INDEX on "+table+" without CONCURRENTLY")
		}
	case n.GetTruncateStmt() != nil, n.GetLockStmt() != nil, n.GetCreateTrigStmt() != nil,
		n.GetReindexStmt() != nil, n.GetClusterStmt() != nil, n.GetVacuumStmt() != nil,
		n.GetAlterObjectSchemaStmt() != nil, n.GetRuleStmt() != nil, n.GetCreatePolicyStmt() != nil:
		locks = true
	}
	if locks && !c.timeout && !c.localTimeout && !c.lockReported {
		c.lockReported = true
		c.flag(s, RuleLockTimeout, "the first statement that locks a table runs with no lock_timeout")
	}
}

// setting follows SET / SET LOCAL / RESET lock_timeout. A zero timeout is none.
func (c *checker) setting(v *pg.VariableSetStmt) {
	if v.Kind == pg.VariableSetKind_VAR_RESET_ALL {
		c.timeout, c.localTimeout = false, false
		return
	}
	if v.Name != "lock_timeout" {
		return
	}
	on := v.Kind == pg.VariableSetKind_VAR_SET_VALUE && len(v.Args) == 1 && !zero(v.Args[0])
	if v.IsLocal {
		c.localTimeout = on
	} else {
		c.timeout = on
		if !on {
			c.localTimeout = false
		}
	}
}

// zero: 0, '0', '0s', '0ms' and so on.
func zero(n *pg.Node) bool {
	k := n.GetAConst()
	if k == nil {
		return false
	}
	if i := k.GetIval(); i != nil {
		return i.Ival == 0
	}
	if sv := k.GetSval(); sv != nil {
		v := strings.TrimRight(strings.ToLower(strings.TrimSpace(sv.Sval)), "abcdefghijklmnopqrstuvwxyz ")
		return v != "" && strings.Trim(v, "0") == ""
	}
	return false
}

func (c *checker) alterTable(s *stmt, table string, cmd *pg.AlterTableCmd) {
	if cmd == nil {
		return
	}
	switch cmd.Subtype {
	case pg.AlterTableType_AT_DropColumn:
		c.flag(s, RuleDropColumn, "drop column "+table+"."+cmd.Name)
	case pg.AlterTableType_AT_AlterColumnType:
		c.flag(s, RuleColumnType, "change the type of "+table+"."+cmd.Name)
	case pg.AlterTableType_AT_SetNotNull:
		c.flag(s, RuleSetNotNull, "set "+table+"."+cmd.Name+" NOT NULL")
	case pg.AlterTableType_AT_AddConstraint:
		c.constraint(s, table, cmd.Def.GetConstraint())
	case pg.AlterTableType_AT_AddColumn:
		c.addColumn(s, table, cmd.Def.GetColumnDef())
	}
}

func (c *checker) constraint(s *stmt, table string, k *pg.Constraint) {
	if k == nil || k.SkipValidation {
		return
	}
	switch k.Contype {
	case pg.ConstrType_CONSTR_FOREIGN:
		c.flag(s, RuleForeignKey, "add a foreign key on "+table+" without NOT VALID")
	case pg.ConstrType_CONSTR_CHECK:
		c.flag(s, RuleCheck, "add a CHECK constraint on "+table+" without NOT VALID")
	}
}

func (c *checker) addColumn(s *stmt, table string, cd *pg.ColumnDef) {
	if cd == nil {
		return
	}
	col := table + "." + cd.Colname
	notNull, def, rewrite := cd.IsNotNull, cd.RawDefault, ""
	for _, kn := range cd.Constraints {
		k := kn.GetConstraint()
		switch k.GetContype() {
		case pg.ConstrType_CONSTR_NOTNULL, pg.ConstrType_CONSTR_PRIMARY:
			notNull = true
		case pg.ConstrType_CONSTR_DEFAULT:
			def = k.RawExpr
		case pg.ConstrType_CONSTR_IDENTITY:
			rewrite = "an identity column"
		case pg.ConstrType_CONSTR_GENERATED:
			rewrite = "a stored generated column"
		case pg.ConstrType_CONSTR_FOREIGN, pg.ConstrType_CONSTR_CHECK:
			c.constraint(s, table, k)
		}
	}
	if def.GetAConst().GetIsnull() {
		def = nil // DEFAULT NULL is no default
	}
	if t := typeName(cd.TypeName); strings.HasSuffix(t, "serial") || t == "serial2" || t == "serial4" || t == "serial8" {
		rewrite = "a " + t + " column (its default is nextval())"
	}
	switch {
	case rewrite != "":
		c.flag(s, RuleVolatileDefault, "add "+rewrite+" "+col)
	case def != nil && volatile(def):
		c.flag(s, RuleVolatileDefault, "add column "+col+" with a volatile default")
	case notNull && def == nil:
		c.flag(s, RuleAddNotNull, "add column "+col+" NOT NULL without a DEFAULT")
	}
}

// stableFuncs are the functions a column default may call without rewriting
// the table (Postgres evaluates a non-volatile default once, since 11). Every
// other function call counts as volatile: random(), clock_timestamp(),
// gen_random_uuid(), nextval() and any function of your own. now() and
// CURRENT_TIMESTAMP are stable: every existing row gets the migration's time.
var stableFuncs = map[string]bool{
	"now": true, "transaction_timestamp": true, "statement_timestamp": true,
	"lower": true, "upper": true, "length": true, "concat": true, "btrim": true,
	"abs": true, "round": true, "make_date": true, "make_time": true, "make_timestamp": true,
	"make_timestamptz": true, "make_interval": true, "to_timestamp": true, "to_date": true,
	"to_json": true, "to_jsonb": true, "json_build_object": true, "jsonb_build_object": true,
	"json_build_array": true, "jsonb_build_array": true, "array_fill": true,
}

// volatile tells whether a default expression may give each row a different
// value. Constants, casts, operators, CURRENT_* and stableFuncs do not; any
// other function call or expression does.
func volatile(n *pg.Node) bool {
	switch {
	case n == nil, n.GetAConst() != nil, n.GetSqlvalueFunction() != nil:
		return false
	case n.GetTypeCast() != nil:
		return volatile(n.GetTypeCast().Arg)
	case n.GetAExpr() != nil:
		return volatile(n.GetAExpr().Lexpr) || volatile(n.GetAExpr().Rexpr)
	case n.GetAArrayExpr() != nil:
		return anyVolatile(n.GetAArrayExpr().Elements)
	case n.GetCoalesceExpr() != nil:
		return anyVolatile(n.GetCoalesceExpr().Args)
	case n.GetBoolExpr() != nil:
		return anyVolatile(n.GetBoolExpr().Args)
	case n.GetFuncCall() != nil:
		f := n.GetFuncCall()
		name := strings.TrimPrefix(listName(&pg.Node{Node: &pg.Node_List{List: &pg.List{Items: f.Funcname}}}), "pg_catalog.")
		return !stableFuncs[name] || anyVolatile(f.Args)
	}
	return true
}

func anyVolatile(ns []*pg.Node) bool {
	for _, n := range ns {
		if volatile(n) {
			return true
		}
	}
	return false
}

// relName is schema.table, or table when no schema is named.
func relName(r *pg.RangeVar) string {
	if r == nil {
		return ""
	}
	if r.Schemaname != "" {
		return r.Schemaname + "." + r.Relname
	}
	return r.Relname
}

// listName joins a qualified name list (a List of String nodes) with dots.
func listName(n *pg.Node) string {
	var parts []string
	for _, it := range n.GetList().GetItems() {
		parts = append(parts, it.GetString_().GetSval())
	}
	return strings.Join(parts, ".")
}

func typeName(t *pg.TypeName) string {
	if t == nil || len(t.Names) == 0 {
		return ""
	}
	return t.Names[len(t.Names)-1].GetString_().GetSval()
}
