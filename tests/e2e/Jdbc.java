// Reservoir's PostgreSQL protocol through the PostgreSQL JDBC driver (pgJDBC, Debian's
// libpostgresql-jdbc-java): the metadata calls DBeaver and Metabase make when they connect and
// browse — product version, schemas, tables, columns, keys — and a prepared statement.
//
// usage: java -cp /usr/share/java/postgresql.jar tests/e2e/Jdbc.java HOST PORT LOGIN PASSWORD
//
// The login must be the consumer ds-reader (grants on minzheng.villages and minzheng.streets):
// the metadata must list exactly those tables and only their granted columns.

import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;

public class Jdbc {
    static void check(boolean ok, String what) {
        if (!ok) {
            throw new AssertionError(what);
        }
    }

    static List<String> column(ResultSet rs, String name) throws Exception {
        List<String> out = new ArrayList<>();
        while (rs.next()) {
            out.add(rs.getString(name));
        }
        rs.close();
        return out;
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://" + args[0] + ":" + args[1] + "/raw";
        Properties props = new Properties();
        props.setProperty("user", args[2]);
        props.setProperty("password", args[3]);
        props.setProperty("ApplicationName", "jdbc-e2e");
        try (Connection c = DriverManager.getConnection(url, props)) {
            DatabaseMetaData md = c.getMetaData();
            check(md.getDatabaseProductName().equals("PostgreSQL"), md.getDatabaseProductName());
            check(md.getDatabaseMajorVersion() >= 12, md.getDatabaseProductVersion());

            List<String> schemas = column(md.getSchemas(), "TABLE_SCHEM");
            check(schemas.contains("minzheng"), "schemas: " + schemas);

            List<String> tables = column(md.getTables(null, "minzheng", "%", new String[] {"TABLE"}), "TABLE_NAME");
            check(tables.contains("villages") && tables.contains("streets"), "tables: " + tables);
            List<String> others = column(md.getTables(null, "tongji", "%", new String[] {"TABLE"}), "TABLE_NAME");
            check(others.isEmpty(), "ungranted tables listed: " + others);

            List<String> columns = column(md.getColumns(null, "minzheng", "villages", "%"), "COLUMN_NAME");
            check(columns.equals(List.of("code", "name", "streetCode")), "columns: " + columns);
            column(md.getPrimaryKeys(null, "minzheng", "villages"), "COLUMN_NAME");
            column(md.getImportedKeys(null, "minzheng", "villages"), "FKCOLUMN_NAME");

            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT count(*) FROM minzheng.villages WHERE \"streetCode\" = ?")) {
                ps.setString(1, "310117001");
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next() && rs.getLong(1) > 0, "no villages in street 310117001");
                }
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT name FROM minzheng.streets ORDER BY code LIMIT ?")) {
                ps.setInt(1, 3);
                try (ResultSet rs = ps.executeQuery()) {
                    int n = 0;
                    while (rs.next()) {
                        String name = rs.getString(1);
                        check(name.substring(1).chars().allMatch(ch -> ch == '*'), name + " is not masked");
                        n++;
                    }
                    check(n > 0, "no streets");
                }
            }
            System.out.println("jdbc e2e: pgJDBC metadata (schemas " + schemas + ", tables " + tables
                + ", columns " + columns + ") and prepared statements work");
        }
    }
}
