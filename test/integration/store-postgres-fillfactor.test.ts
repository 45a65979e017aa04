import { afterEach, describe, expect, it } from "vitest";
import { PostgresStore } from "../../store/postgres.js";
import { TIERS } from "../../store/tiers.js";
import { createDatabase } from "../helpers/postgres.js";

describe("the PostgreSQL store's tier tables", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it("leave room on each page for in-place (HOT) updates: fillfactor 70 from migration 6", async () => {
    const db = await createDatabase("store_fillfactor");
    cleanups.push(() => db.dispose());
    const store = await PostgresStore.open(db.url);
    cleanups.push(() => store.stop());
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
