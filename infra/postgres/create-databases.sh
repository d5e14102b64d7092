#!/bin/sh
# Create one role and one database per service, each owned by its role, on the first start of the
# postgres container (the image runs /docker-entrypoint-initdb.d/*.sh only while the data volume is
# empty). Each service's password comes from <SERVICE>_DB_PASSWORD.
set -eu

for service in contacts scoring sequencer gateway; do
    password_variable="$(echo "$service" | tr '[:lower:]' '[:upper:]')_DB_PASSWORD"
    password="$(printenv "$password_variable" || true)"
    if [ -z "$password" ]; then
        echo "create-databases: $password_variable is missing; set it in infra/.env" >&2
        exit 1
    fi

    # psql substitutes :"name" as a quoted identifier and :'name' as a quoted literal, so no
    # value is pasted into SQL unquoted.
    psql --set ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
         --set service="$service" --set password="$password" <<'SQL'
CREATE ROLE :"service" LOGIN PASSWORD :'password';
CREATE DATABASE :"service" OWNER :"service";
REVOKE ALL ON DATABASE :"service" FROM PUBLIC;
SQL
    echo "create-databases: created role and database $service"
done
