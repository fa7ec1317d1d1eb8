-- Repository names are unique per owner regardless of case: `Hello` and
-- `hello` read as one name to people (and upper case is not allowed in image
-- names), so a second one is refused and lookups ignore case.
CREATE UNIQUE INDEX repos_owner_name_nocase ON repos (owner_id, name COLLATE NOCASE);
