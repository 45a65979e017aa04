import { describe, expect, it } from "vitest";
import { TIERS } from "../../store/tiers.js";
import { postgresStores } from "../helpers/postgres.js";

describe("the PostgreSQL store's tier tables", () => {
  const { database, open } = postgresStores();

  it("leave room on each page for in-place (HOT) updates: fillfactor 70 from migration 6", async () => {
    const db = await database("store_fillfactor");
    await open(db);
    const rows = await db.query<{ relname: string; reloptions: string[] | null }>(
      "SELECT relname, reloptions FROM pg_class WHERE relname = ANY($1) ORDER BY relname",
      [TIERS.map((t) => t.table)],
    );
    expect(rows).toEqual(
      TIERS.map((t) => ({ relname: t.table, reloptions: ["fillfactor=70"] })).sort((a, b) =>
        a.relname < b.relname ? -1 : 1,
      ),
    );
  });
});
