-- What every throwaway mariadbd gets at start, run as root over its socket by
-- the tests (tests/support/mariadb.rs, with include_str!) and by
-- scripts/mariadb-throwaway.sh: user sera, password sera-pass, over TCP and
-- the socket, with every privilege (tests KILL other sessions and read
-- information_schema.PROCESSLIST), and a database for the DSNs that name one.
CREATE USER 'sera'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('sera-pass');
CREATE USER 'sera'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('sera-pass');
GRANT ALL ON *.* TO 'sera'@'%';
GRANT ALL ON *.* TO 'sera'@'localhost';
CREATE DATABASE sera_test;
