# The semantic cache's Redis copy (aigw_cache_semantic with
# aigw_cache_redis on): the vectors of one nginx's answers go to Redis
# ("aigw:sem:" and the partition), and another nginx whose zone has none
# of that partition loads them while it asks for the embeddings; a
# paraphrase then hits there, its answer fetched from Redis.  Redis
# down: the request goes on, a miss.  Plain Test::More: a real
# redis-server and two nginx.

use strict;
use warnings;

BEGIN { push @INC, 't/lib' }
use AigwFixture;

use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep time);

my @ngx = suite_nginx(2);
my $mock = mock_port();
my $redis = suite_redis();
my $rport = $redis->port;

for my $n (@ngx) {
    $n->write_keys({ id => 'k_sem_r', tenant => 'acme',
                     key => 'sk-sem-redis' });

    $n->write_http(<<"EOC"
    aigw_keys keys.json;
    aigw_redis 127.0.0.1:$rport timeout=300ms;
    aigw_cache_zone cache:1m;
    aigw_provider ok http://127.0.0.1:$mock/v1;
    aigw_model m ok:gpt-4o;
    server {
        listen 127.0.0.1:@{[ $n->port ]};
        location /v1/ {
            aigw_cache on;
            aigw_cache_redis on;
            aigw_cache_semantic /_embed;
            aigw_cache_semantic_model mock-semantic;
            aigw_pass;
        }
EOC
        . embed_location('/_embed', "http://127.0.0.1:$mock/v1/embeddings")
        . "    }\n");

    ok($n->start, 'nginx starts') or BAIL_OUT($n->start_error);
}

sub ask {
    my ($n, $text) = @_;
    my $t = time;
    my $r = $n->request('POST', '/v1/chat/completions',
                        { Authorization => 'Bearer sk-sem-redis',
                          'Content-Type' => 'application/json' },
                        encode_json({ model => 'm', messages => [
                            { role => 'user', content => $text } ] }));
    $r->{took} = time - $t;
    ($r->{cache}) = $r->{headers} =~ /^X-AIGW-Cache:\s*(\S+)/mi;
    $r->{cache} //= '';
    my $j = eval { decode_json($r->{body}) } // {};
    $r->{content} = $j->{choices}[0]{message}{content} // '';
    return $r;
}

# the vectors of a partition in Redis, once there are n (not waited for)
sub vectors {
    my ($n) = @_;
    my ($k, $len);

    for (1 .. 100) {
        ($k) = $redis->cmd('KEYS', 'aigw:sem:*')
               =~ /^(aigw:sem:[0-9a-f]{64})\r?$/m;
        if ($k) {
            ($len) = $redis->cmd('LLEN', $k) =~ /(\d+)/;
            last if $len >= $n;
        }
        sleep 0.05;
    }

    return $len // 0;
}

# stored on A, its vector in Redis; a paraphrase on B hits

my $a = ask($ngx[0], 'What is the capital of France?');
is("$a->{status} $a->{cache}", '200 MISS', 'node A: stored');
is(vectors(1), 1, 'its vector is in Redis');

my $b = ask($ngx[1], 'Tell me the capital of France.');
is($b->{cache}, 'SEMANTIC_HIT', 'node B: a paraphrase hits, from Redis');
ok($b->{content} ne '' && $b->{content} eq $a->{content},
   'with the answer node A stored');

is(ask($ngx[1], 'France\'s capital is what?')->{cache}, 'SEMANTIC_HIT',
   'node B again: a hit, from its zone now');
is(ask($ngx[1], 'What is the capital of Germany?')->{cache}, 'MISS',
   'node B: a hard negative misses');
is(vectors(2), 2, 'node B\'s vector goes to Redis too');

# Redis down: the lookup goes on without it

$redis->stop;

my $d = ask($ngx[1], 'How many km is 5 miles?');
is("$d->{status} $d->{cache}", '200 MISS', 'Redis down: a 200 miss');
ok($d->{took} < 2, "Redis down: at once ($d->{took} s)");

for my $n (@ngx) {
    $n->stop;
    open my $fh, '<', $n->dir . '/logs/error.log';
    my @bad = grep { /\[(alert|crit|emerg)\]|AddressSanitizer|runtime error/ }
              <$fh>;
    is(scalar @bad, 0, 'no alert, crit or sanitizer line') or diag @bad;
}

done_testing;
