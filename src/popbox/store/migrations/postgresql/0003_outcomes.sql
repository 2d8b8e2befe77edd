-- popbox PostgreSQL schema, version 3: what lets popbox learn the outcome of a commit
-- whose reply was lost, and recognise an MTA's retry of a delivery that did commit.

-- One row per UPDATE, written in UPDATE's own transaction: after a connection dies
-- during COMMIT, popbox reconnects and looks the token up before it answers QUIT.
-- Rows are purged by later UPDATEs once they are a day old.
CREATE TABLE commit_tokens (
    token        text COLLATE "C" PRIMARY KEY,
    committed_at double precision NOT NULL,
    removed      bigint NOT NULL  -- how many messages this UPDATE removed
);
CREATE INDEX commit_tokens_age ON commit_tokens (committed_at);

-- A delivery's key (recipient and content digest) with the uid it was stored under,
-- written in the delivery's transaction.  A delivery whose key the mailbox recorded
-- within [lmtp] dedup_window is answered as delivered without storing a second copy.
CREATE TABLE delivery_keys (
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key          text COLLATE "C" NOT NULL,
    uid          bigint NOT NULL,
    delivered_at double precision NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX delivery_keys_age ON delivery_keys (user_id, delivered_at);
