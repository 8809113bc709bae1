-- Members: buyers and operators. Emails are stored normalized (trimmed,
-- ASCII, lowercase), so they are compared byte for byte. Passwords are
-- stored only as Argon2id hashes (PHC strings).
CREATE TABLE IF NOT EXISTS members (
    id            BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email         VARCHAR(254) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    name          VARCHAR(100) NOT NULL,
    role          VARCHAR(8)   CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    password_hash VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at    DATETIME(6)  NOT NULL,
    UNIQUE KEY members_email (email),
    CONSTRAINT members_role CHECK (role IN ('USER', 'ADMIN'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
