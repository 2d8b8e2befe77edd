-- popbox SQLite schema, version 3: recognising an MTA's retry of a delivery that did
-- commit.  A delivery's key (recipient and content digest) is written with the uid it
-- was stored under in the delivery's transaction; a delivery whose key the mailbox
-- recorded within [lmtp] dedup_window is answered as delivered without a second copy.
CREATE TABLE delivery_keys (
    user_id      INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key          TEXT    NOT NULL,
    uid          INTEGER NOT NULL,
    delivered_at REAL    NOT NULL,
    PRIMARY KEY (user_id, key)
) WITHOUT ROWID;
CREATE INDEX delivery_keys_age ON delivery_keys (user_id, delivered_at);
