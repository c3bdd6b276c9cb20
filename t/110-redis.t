# aigw_redis: "nginx -t" takes the directive with its options and refuses
# bad ones with the file and the line; nginx starts and reloads with it,
# and opens no connection to Redis until something uses it (the quota,
# the cache and the audit log will; their suites test the command path).
# Plain Test::More: it needs a real redis-server and a master process.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwNginx;
use AigwRedis;

use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep);

my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
my @modules = split ' ', ($ENV{TEST_NGINX_LOAD_MODULES} || '');

plan skip_all => 'TEST_NGINX_LOAD_MODULES does not name the module'
    unless @modules;
plan skip_all => 'no /usr/bin/redis-server (Debian: redis-server)'
    unless AigwRedis::available();

my $dir = tempdir(CLEANUP => 1);
mkdir "$dir/logs";

# the aigw_redis line comes after the modules, error_log, pid, events, http
sub nginx_t {
    my ($http, %env) = @_;

    my $conf = "$dir/nginx.conf";
    open my $fh, '>', $conf or die "$conf: $!";
    print $fh "load_module $_;\n" for @modules;
    print $fh "error_log $dir/logs/error.log;\npid $dir/logs/nginx.pid;\n",
              "events { worker_connections 16; }\n",
              "http {\n$http\n",
              "    server { listen 127.0.0.1:1; }\n",
              "}\n";
    close $fh;

    local %ENV = (%ENV, %env);
    my $out = `$nginx -p $dir -c $conf -t 2>&1`;
    return ($? == 0, $out);
}

my $line = 5 + @modules;
my ($ok, $out);

for my $good ('aigw_redis 127.0.0.1;',
              'aigw_redis 127.0.0.1:6380;',
              'aigw_redis 10.1.2.3:6379 password=s3cret db=2 timeout=250ms '
              . 'pool=8;',
              'aigw_redis 127.0.0.1 timeout=1s pool=1 db=0;')
{
    ($ok, $out) = nginx_t($good);
    ok($ok, "accepted: $good") or diag $out;
}

($ok, $out) = nginx_t('aigw_redis 127.0.0.1 password_env=AIGW_T_REDIS_PW;',
                      AIGW_T_REDIS_PW => 'pw-from-env');
ok($ok, 'password_env is read') or diag $out;
unlike($out, qr/pw-from-env/, 'password_env: the secret is not shown');

my @bad = (
    [ 'aigw_redis redis.example.com:6379;',
      qr/aigw_redis needs an IPv4 address, not "redis\.example\.com"/,
      'a host name' ],
    [ 'aigw_redis localhost;',
      qr/needs an IPv4 address, not "localhost": a worker resolves no names/,
      'localhost' ],
    [ 'aigw_redis [::1]:6379;', qr/IPv6 addresses are not supported/,
      'IPv6' ],
    [ 'aigw_redis 127.0.0.1:99999;',
      qr/invalid port in aigw_redis "127\.0\.0\.1:99999"/, 'port too big' ],
    [ 'aigw_redis 127.0.0.1:0;', qr/invalid port/, 'port 0' ],
    [ 'aigw_redis 127.0.0.1:;', qr/invalid port/, 'empty port' ],
    [ 'aigw_redis 127.0.0.1 bogus=1;', qr/invalid parameter "bogus=1"/,
      'unknown option' ],
    [ 'aigw_redis 127.0.0.1 db=x;', qr/invalid parameter "db=x"/, 'bad db' ],
    [ 'aigw_redis 127.0.0.1 timeout=0;', qr/invalid parameter "timeout=0"/,
      'zero timeout' ],
    [ 'aigw_redis 127.0.0.1 timeout=fast;',
      qr/invalid parameter "timeout=fast"/, 'bad timeout' ],
    [ 'aigw_redis 127.0.0.1 pool=0;', qr/invalid parameter "pool=0", pool/,
      'pool 0' ],
    [ 'aigw_redis 127.0.0.1 pool=65;', qr/pool must be 1\.\.64/,
      'pool too big' ],
    [ 'aigw_redis 127.0.0.1 db=1 db=2;', qr/parameter "db=2" is duplicate/,
      'duplicate option' ],
    [ 'aigw_redis 127.0.0.1 password=;', qr/empty password/,
      'empty password' ],
    [ 'aigw_redis 127.0.0.1 password=a password_env=AIGW_T_REDIS_PW;',
      qr/password of aigw_redis is duplicate/, 'two passwords' ],
    [ 'aigw_redis 127.0.0.1 password_env=AIGW_T_REDIS_UNSET;',
      qr/environment variable "AIGW_T_REDIS_UNSET" is not set/,
      'unset password_env' ],
    [ 'aigw_redis;', qr/invalid number of arguments in "aigw_redis"/,
      'no address' ],
);

for my $b (@bad) {
    my ($conf, $re, $name) = @$b;
    ($ok, $out) = nginx_t($conf, AIGW_T_REDIS_PW => 'pw-from-env');
    ok(!$ok, "refused: $name");
    like($out, qr/$re.*nginx\.conf:$line/, "$name: message, file and line");
}

($ok, $out) = nginx_t("aigw_redis 127.0.0.1;\naigw_redis 127.0.0.2;");
ok(!$ok, 'a second aigw_redis is refused');
like($out, qr/"aigw_redis" directive is duplicate.*nginx\.conf:@{[$line + 1]}/,
     'duplicate directive: message, file and line');

($ok, $out) = nginx_t('aigw_redis 127.0.0.1 password=sekrit-pw bogus=1;');
ok(!$ok, 'an error beside a password is refused');
unlike($out, qr/sekrit-pw/, 'the password is not in the message');

{
    my $conf = "$dir/loc.conf";
    open my $fh, '>', $conf or die;
    print $fh "load_module $_;\n" for @modules;
    print $fh "error_log $dir/logs/error.log;\npid $dir/logs/nginx.pid;\n",
              "events { worker_connections 16; }\n",
              "http { server { listen 127.0.0.1:1;\n",
              "    location / { aigw_redis 127.0.0.1; } } }\n";
    close $fh;
    my $o = `$nginx -p $dir -c $conf -t 2>&1`;
    ok($? != 0, 'aigw_redis in a location is refused');
    like($o, qr/"aigw_redis" directive is not allowed here/,
         'location: message');
}

# a real Redis: nginx starts and reloads with aigw_redis, and connects to
# it only when something runs a command

my $redis = AigwRedis->new(password => 'pw-110');
ok($redis, 'redis-server starts') or BAIL_OUT('no redis-server');
my $rpid = $redis->pid;

is($redis->clients, 0, 'redis-server: no client yet');

my $ngx = AigwNginx->new;
my $ndir = $ngx->dir;
my $port = $ngx->port;

$ENV{AIGW_T_REDIS_PW} = 'pw-110';

$ngx->write_conf(<<"EOC");
load_module $modules[0];
worker_processes 2;
error_log $ndir/logs/error.log info;
pid $ndir/logs/nginx.pid;
events { worker_connections 64; }
http {
    access_log off;
    aigw_redis 127.0.0.1:@{[ $redis->port ]} password_env=AIGW_T_REDIS_PW
               db=1 timeout=200ms pool=2;
    server {
        listen 127.0.0.1:$port;
        location / { return 200 "ok\\n"; }
    }
}
EOC

ok($ngx->start, 'nginx starts with aigw_redis') or diag $ngx->start_error;
is($ngx->request('GET', '/')->{status}, 200, 'it serves');

sleep 0.3;
is($redis->clients, 0, 'no connection opened while unused');

$ngx->signal('HUP');
sleep 1;
is($ngx->request('GET', '/')->{status}, 200, 'it serves after a reload');
is($redis->clients, 0, 'still no connection after a reload');

$ngx->stop;
$ngx->{stopped} = 1;

my $log = $ngx->error_log;
unlike($log, qr/\[(alert|crit|emerg)\]/, 'no alert in the error log');
unlike($log, qr/pw-110/, 'no password in the error log');

undef $redis;
ok(!kill(0, $rpid), 'redis-server is gone with its object');

done_testing;
